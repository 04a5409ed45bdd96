//! `reasons.toml`: error code -> user-facing messages (zh and en).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

const GENERIC_ZH: &str = "您的请求未获许可,请联系企业的法定代表人、财务负责人或管理员。";
const GENERIC_EN: &str = "The request is not permitted. Contact the enterprise's legal representative, finance manager or administrator.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    message: String,
    message_en: String,
}

/// The messages of one policy set, with a generic fallback for unknown codes.
#[derive(Debug, Clone)]
pub struct Reasons {
    map: HashMap<String, (Arc<str>, Arc<str>)>,
    generic: (Arc<str>, Arc<str>),
}

impl Default for Reasons {
    fn default() -> Self {
        Reasons {
            map: HashMap::new(),
            generic: (Arc::from(GENERIC_ZH), Arc::from(GENERIC_EN)),
        }
    }
}

impl Reasons {
    /// Parses `reasons.toml`; the error names the line at fault.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let raw: HashMap<String, RawEntry> = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| super::load::line_of(text, s.start))
                .unwrap_or(1);
            (line, e.message().to_string())
        })?;
        let mut reasons = Reasons::default();
        for (code, entry) in raw {
            reasons.map.insert(
                code,
                (Arc::from(entry.message), Arc::from(entry.message_en)),
            );
        }
        Ok(reasons)
    }

    /// `reasons.toml` has a message for `code`.
    pub fn contains(&self, code: &str) -> bool {
        self.map.contains_key(code)
    }

    /// The codes `reasons.toml` has messages for, sorted (the policies' part of the error codes
    /// `/openapi.json` lists).
    pub fn codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = self.map.keys().map(String::as_str).collect();
        codes.sort_unstable();
        codes
    }

    /// (Chinese, English) message for `code`, or the generic message for an unknown code.
    pub fn message(&self, code: &str) -> (Arc<str>, Arc<str>) {
        let (zh, en) = self.map.get(code).unwrap_or(&self.generic);
        (Arc::clone(zh), Arc::clone(en))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_codes() {
        let r = Reasons::parse("[not_linked]\nmessage = \"未关联\"\nmessage_en = \"not linked\"\n")
            .unwrap();
        assert_eq!(&*r.message("not_linked").0, "未关联");
        assert_eq!(&*r.message("nope").1, GENERIC_EN);
    }

    #[test]
    fn error_names_the_line() {
        let err = Reasons::parse("[a]\nmessage = \"x\"\nmessage_en = \"y\"\n[b]\nmesage = \"x\"\n")
            .unwrap_err();
        assert_eq!(err.0, 5, "{err:?}");
    }
}
