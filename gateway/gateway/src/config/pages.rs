//! `[pages]`: the login and account pages (CONTRACT section 13).

use serde::Deserialize;

/// `[pages]`: where a login lands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagesConfig {
    /// Where a login lands when the login page was not given a `next` (default `/account`): a
    /// path on the gateway's own origin, such as a tax service's start page.
    #[serde(default = "default_home")]
    pub home_url: String,
}

fn default_home() -> String {
    "/account".to_string()
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            home_url: default_home(),
        }
    }
}

impl PagesConfig {
    pub(super) fn validate<E>(&self, err: &impl Fn(&str, String) -> E) -> Result<(), E> {
        if !crate::web::safe_return_path(&self.home_url) {
            return Err(err(
                "pages.home_url",
                format!(
                    "`{}` is not a path on this gateway: write one starting with a single `/` \
                     (such as \"/account\" or \"/etax/home\"), of letters, digits and `-._~/?=&%`",
                    self.home_url
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BASE, load};

    #[test]
    fn home_url_defaults_to_the_account_centre_and_must_be_local() {
        assert_eq!(load(BASE).unwrap().pages.home_url, "/account");
        let ok = load(&format!(
            "{BASE}\n[pages]\nhome_url = \"/etax/home?tab=1\"\n"
        ))
        .unwrap();
        assert_eq!(ok.pages.home_url, "/etax/home?tab=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\\\evil",
            "account",
            "/a\\\"b",
        ] {
            let e = load(&format!("{BASE}\n[pages]\nhome_url = \"{bad}\"\n")).unwrap_err();
            assert_eq!(e.key, "pages.home_url", "{bad}: {e}");
        }
    }
}
