//! The `taxgate` binary as a user meets it first: version, help and usage errors. Being an
//! integration test of this package, it also makes `cargo test --workspace` build the binary
//! before any test runs, which the end-to-end tests (another package) then start.

#![expect(clippy::panic, reason = "a test fails loudly")]

use std::process::Command;

fn taxgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taxgate"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run taxgate: {e}"))
}

#[test]
fn version_help_and_usage_errors() {
    let v = taxgate(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("taxgate "));
    let help = taxgate(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in ["serve", "demo", "migrate", "import", "policy"] {
        assert!(text.contains(cmd), "`{cmd}` missing from --help");
    }
    assert_eq!(taxgate(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        taxgate(&["serve"]).status.code(),
        Some(2),
        "--config is required"
    );
    let missing = taxgate(&["serve", "--config", "/nonexistent/taxgate.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/taxgate.toml"));
}
