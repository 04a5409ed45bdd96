//! Gateway config text for tests: the sections a test does not care about, with the store, the
//! policies or the identity key a test may swap in.

use std::path::{Path, PathBuf};

use taxgate_gateway::assertion::{self, Algorithm, KeyError};

use crate::recovery::FACE_SECRET;

/// The sections of a gateway config a test does not care about.
pub fn config_text(dir: &Path, upstream_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{db}"

[policies]
dir = "{policies}"
watch = false

[sms]
provider = "file"
path = "{outbox}"

[face]
callback_secret = "{FACE_SECRET}"

{session}
{login}
{identity}
[[upstreams]]
name = "etax"
url = "{upstream_url}"
timeout_secs = 2

[[routes]]
prefix = "/api/declare"
methods = ["POST", "GET"]
action = "declare"
upstream = "etax"

[[routes]]
prefix = "/api/query"
action = "query"
upstream = "etax"

[[routes]]
prefix = "/api/invoice"
action = "invoice"
upstream = "etax"

[[routes]]
prefix = "/api/tax-affairs"
action = "tax_affairs"
upstream = "etax"

[[routes]]
prefix = "/api/personal"
action = "personal_tax"
upstream = "etax"
{extra}
"#,
        db = dir.join("taxgate.db").display(),
        policies = policies_dir().display(),
        outbox = sms_outbox(dir).display(),
        // Tests log the same person in repeatedly: no resend interval unless a test sets one.
        login = if extra.contains("[login]") {
            ""
        } else {
            "[login]\nsms_resend_secs = 0\n"
        },
        // Secure by default (issue 15 point 12): every test gateway signs identity assertions
        // with a key of its own, unless the test brings its own [upstream_identity].
        identity = if extra.contains("[upstream_identity]") {
            String::new()
        } else {
            test_identity_section(dir)
        },
        // A test that brings its own [session] table replaces this one.
        session = if extra.contains("[session]") {
            ""
        } else {
            "[session]\ncookie_secure = false\n"
        },
    )
}

/// The file outbox of a gateway configured by [`config_text`] in `dir`.
pub(crate) fn sms_outbox(dir: &Path) -> PathBuf {
    dir.join("sms-outbox.jsonl")
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("policies")
}

/// `config_text` with the store URL replaced (PostgreSQL, or a relay in front of it).
pub fn config_text_with_store(dir: &Path, upstream_url: &str, extra: &str, store: &str) -> String {
    config_text(dir, upstream_url, extra).replace(
        &format!("sqlite://{}", dir.join("taxgate.db").display()),
        store,
    )
}

/// Copy a directory tree (a test's private copy of `policies/`).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `config_text` whose policies are a private copy of the repository's (`dir/policies`, also
/// returned), watched, for tests that change the set while the gateway runs.
pub fn config_with_watched_policies(dir: &Path, upstream_url: &str) -> (String, PathBuf) {
    let policies = dir.join("policies");
    copy_dir(&policies_dir(), &policies);
    let text = config_text(dir, upstream_url, "")
        .replace(
            &policies_dir().display().to_string(),
            &policies.display().to_string(),
        )
        .replace("watch = false", "watch = true");
    (text, policies)
}

/// `[upstream_identity]` with an Ed25519 key generated once in `dir` (the secure default the
/// gateway refuses to start without).
pub fn test_identity_section(dir: &Path) -> String {
    let key = dir.join("test-assertion.pem");
    if !key.exists() {
        match assertion::write_new_key(&key, Algorithm::EdDSA, false) {
            Ok(_) | Err(KeyError::Exists { .. }) => {}
            Err(e) => panic!("cannot write the test assertion key: {e}"),
        }
    }
    format!("[upstream_identity]\nsigning_key = \"{}\"\n", key.display())
}
