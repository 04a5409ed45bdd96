//! Issue 10: policy change safety. Decisions recorded from real traffic are replayed against
//! candidate sets (`taxgate policy replay`, the real binary), a shadow set decides live traffic
//! without changing any response, coverage counts a scripted traffic mix, and the widening gate
//! refuses a reload that would allow something recorded as denied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use taxgate_e2e::*;
use taxgate_store::Store;

/// Takes invoices away from everyone: narrows.
const NO_INVOICE: &str = "@id(\"change.no_invoice\")\n@reason(\"not_permitted\")\n\
    forbid (principal, action == Action::\"invoice\", resource);\n";
/// Gives personal tax to every session, whatever the entry: widens.
const PERSONAL_FOR_ALL: &str = "@id(\"change.personal_for_all\")\n\
    permit (principal is Session, action == Action::\"personal_tax\", resource is Person);\n";

/// A gateway whose policy directory is a private copy (`dir/policies`), with the config also
/// written to `dir/taxgate.toml` for the command line. `policies` adds keys to `[policies]`.
async fn start(policies_keys: &str) -> (Env, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&policies_dir(), &policies);
    let up = Upstream::start().await;
    let text = config_text(dir.path(), &up.url(), "")
        .replace(
            &format!("dir = \"{}\"", policies_dir().display()),
            &format!("dir = \"{}\"", policies.display()),
        )
        .replacen(
            "watch = false",
            &format!("watch = false\n{policies_keys}"),
            1,
        );
    let config = dir.path().join("taxgate.toml");
    std::fs::write(&config, &text).unwrap();
    let gw = Gateway::start(&text, dir.path()).await;
    taxgate_store::import_seed(&gw.core.store, &seed_json().to_string(), unix_now())
        .await
        .unwrap();
    (Env { dir, gw, up }, policies, config)
}

/// A candidate: a copy of the repository's policies plus `extra` in `zz_change.cedar`.
fn candidate(root: &Path, name: &str, extra: &str) -> PathBuf {
    let dir = root.join(name);
    copy_dir(&policies_dir(), &dir);
    std::fs::write(dir.join("zz_change.cedar"), extra).unwrap();
    dir
}

struct Sessions {
    wang: String,
    zhou: String,
    chen: String,
}

async fn log_in(env: &Env) -> Sessions {
    let (wang, _) = env.login_wang().await;
    let (zhou, _) = env
        .login_sms("person", None, ZHOU, ZHOU_PW, "13900000006")
        .await;
    let (chen, _) = env
        .login_sms("agent", Some(AGENCY), CHEN, CHEN_PW, "13900000004")
        .await;
    Sessions { wang, zhou, chen }
}

/// The scripted mix: 11 downstream decisions, 7 allowed, 4 denied.
/// - 王芳 (legal representative of ENT_A): declare ×3 and invoice ×2 allowed, personal ×2
///   denied (no permit);
/// - 周杰 (person entry): personal ×2 allowed, declare ×1 denied (no permit);
/// - 陈静 (agent, no client picked): declare ×1 denied (`client_not_selected`).
async fn scripted_traffic(env: &Env, s: &Sessions) {
    let plan: [(&str, &str, StatusCode, usize); 6] = [
        (&s.wang, "/api/declare/vat", StatusCode::OK, 3),
        (&s.wang, "/api/invoice/issue", StatusCode::OK, 2),
        (&s.wang, "/api/personal/iit", StatusCode::FORBIDDEN, 2),
        (&s.zhou, "/api/personal/iit", StatusCode::OK, 2),
        (&s.zhou, "/api/declare/vat", StatusCode::FORBIDDEN, 1),
        (&s.chen, "/api/declare/vat", StatusCode::FORBIDDEN, 1),
    ];
    for (token, path, status, times) in plan {
        for _ in 0..times {
            assert_eq!(env.get(path, Some(token)).await.status, status, "{path}");
        }
    }
}

/// Waits until the audit writer stored `n` downstream decisions.
async fn recorded(env: &Env, n: usize) {
    let store = env.gw.core.store.clone();
    eventually(Duration::from_secs(10), "decisions recorded", || {
        let store = store.clone();
        async move {
            let got = store.recorded_decisions(0, 10_000).await.unwrap();
            (got.len() == n).then_some(())
        }
    })
    .await;
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(taxgate_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn replay_json(config: &Path, candidate: &Path, more: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "policy",
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--candidate",
        candidate.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(more);
    let (code, out, err) = run(&args);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("replay output is not JSON ({e}): {out}\n{err}"));
    (code, v)
}

#[tokio::test]
async fn replay_finds_exactly_the_flips_of_a_change() {
    let (env, _policies, config) = start("").await;
    let s = log_in(&env).await;
    scripted_traffic(&env, &s).await;
    recorded(&env, 11).await;
    let root = env.dir.path();

    // The same set: nothing flips.
    let (code, same) = replay_json(&config, &policies_dir(), &[]);
    assert_eq!(code, 0, "{same}");
    assert_eq!(
        (
            &same["decisions"],
            &same["replayed"],
            &same["unchanged"],
            &same["not_replayable"]
        ),
        (&11.into(), &11.into(), &11.into(), &0.into()),
        "{same}"
    );

    // Narrowing: exactly 王芳's two invoices flip allow→deny; exit 0.
    let narrow = candidate(root, "narrow", NO_INVOICE);
    let (code, r) = replay_json(&config, &narrow, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (r["allow_to_deny"].as_u64(), r["deny_to_allow"].as_u64()),
        (Some(2), Some(0)),
        "{r}"
    );
    assert_eq!(r["unchanged"], 9);
    assert_eq!(r["widening"], false);
    let flips = r["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 1, "{r}");
    let g = &flips[0];
    assert_eq!(g["kind"], "allow_to_deny");
    assert_eq!(g["entry"], "enterprise");
    assert_eq!(g["role"], "legal_representative");
    assert_eq!(g["action"], "invoice");
    assert_eq!(g["replayed"], "change.no_invoice");
    assert!(
        g["recorded"]
            .as_str()
            .unwrap()
            .contains("role_defaults.legal_representative"),
        "{g}"
    );
    assert_eq!(g["count"], 2);
    let examples = g["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2);
    assert!(examples.iter().all(|e| e["path"] == "/api/invoice/issue"));
    assert!(
        examples
            .iter()
            .all(|e| e["id"].as_str().unwrap().len() == 24)
    );

    // Widening: exactly 王芳's two personal-tax requests flip deny→allow; exit 1.
    let widen = candidate(root, "widen", PERSONAL_FOR_ALL);
    let (code, r) = replay_json(&config, &widen, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        (r["allow_to_deny"].as_u64(), r["deny_to_allow"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    assert_eq!(r["widening"], true);
    let flips = r["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 1, "{r}");
    let g = &flips[0];
    assert_eq!(
        (&g["kind"], &g["entry"], &g["role"], &g["action"]),
        (
            &"deny_to_allow".into(),
            &"enterprise".into(),
            &"legal_representative".into(),
            &"personal_tax".into()
        ),
        "{g}"
    );
    assert_eq!(g["recorded"], "not_permitted");
    assert_eq!(g["replayed"], "change.personal_for_all");
    assert_eq!(g["count"], 2);
    // Accepted on request; the window and limit are honoured.
    let (code, _) = replay_json(&config, &widen, &["--allow-widening"]);
    assert_eq!(code, 0);
    let (code, r) = replay_json(
        &config,
        &widen,
        &["--since", "2000-01-01T00:00:00Z", "--limit", "3"],
    );
    assert_eq!(r["decisions"], 3, "{r}");
    assert_eq!(r["limit_reached"], true);
    assert!(code == 0 || code == 1);

    // Text for people.
    let (code, text, _) = run(&[
        "policy",
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--candidate",
        widen.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(text.contains("deny→allow ×2"), "{text}");
    assert!(text.contains("WIDENING"), "{text}");

    // A user error is 1 (CONTRACT section 1), told apart from a widening by `error:` on stderr
    // and no report; a usage error is 2.
    let (code, out, err) = run(&[
        "policy",
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--candidate",
        root.join("missing").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: --candidate"), "{err}");
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = run(&[
        "policy",
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--candidate",
        widen.to_str().unwrap(),
        "--since",
        "yesterday",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
    env.gw.stop().await;
}

#[tokio::test]
async fn coverage_matches_a_scripted_mix() {
    let (env, _policies, config) = start("").await;
    let s = log_in(&env).await;
    scripted_traffic(&env, &s).await;
    recorded(&env, 11).await;
    let (code, out, err) = run(&[
        "policy",
        "coverage",
        "--config",
        config.to_str().unwrap(),
        "--days",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["decisions"], 11, "{r}");
    assert_eq!(r["no_permit"], 3, "{r}");
    let of = |id: &str| {
        r["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["decisions"].as_u64().unwrap())
    };
    assert_eq!(of("role_defaults.legal_representative"), Some(5), "{r}");
    assert_eq!(of("person.personal_tax"), Some(2), "{r}");
    assert_eq!(of("agent.client_required"), Some(1), "{r}");
    assert_eq!(of("role_defaults.admin"), Some(0));
    let never: Vec<&str> = r["never_fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(never.contains(&"role_defaults.admin"));
    assert!(!never.contains(&"person.personal_tax"));
    // Every decision's determining policies are in the set: nothing unknown.
    assert_eq!(r["not_in_set"], serde_json::json!({}));
    // The never-fired list is exactly the policies with a zero count.
    let zero = r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["decisions"] == 0)
        .count();
    assert_eq!(never.len(), zero);

    let (code, text, _) = run(&["policy", "coverage", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("11 downstream decision(s) in the last 30 day(s)"),
        "{text}"
    );
    assert!(text.contains("never fired"), "{text}");
    env.gw.stop().await;
}

/// The number of audit events once the writer has caught up (two reads agree).
async fn settled_audit_count(env: &Env) -> i64 {
    let mut last = -1;
    loop {
        let now = env.gw.core.store.count_audit().await.unwrap();
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn shadow_counts_disagreements_without_changing_any_response() {
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("shadow");
    copy_dir(&policies_dir(), &shadow);
    std::fs::write(
        shadow.join("zz_change.cedar"),
        format!("{NO_INVOICE}\n{PERSONAL_FOR_ALL}"),
    )
    .unwrap();
    let (mut env, _policies, _config) =
        start(&format!("shadow_dir = \"{}\"", shadow.display())).await;
    let s = log_in(&env).await;
    let before = settled_audit_count(&env).await;
    // Every response is the enforced set's: the shadow would deny the invoices and allow the
    // personal tax.
    scripted_traffic(&env, &s).await;
    let forwarded = drain_seen(&mut env.up);
    assert_eq!(
        forwarded.len(),
        7,
        "exactly the enforced allows reach the upstream"
    );
    assert_eq!(
        forwarded
            .iter()
            .filter(|seen| seen.header("x-taxgate-role") == Some("legal_representative"))
            .count(),
        5
    );
    let denied = env.get("/api/personal/iit", Some(&s.wang)).await;
    assert_eq!(
        (denied.status, denied.error_code()),
        (StatusCode::FORBIDDEN, "not_permitted".to_string())
    );
    // 12 decisions: 2 invoices allow→deny and 3 personal deny→allow in the shadow.
    let admin = env.gw.admin;
    let m = eventually(Duration::from_secs(10), "shadow decisions", || async move {
        let text = String::from_utf8_lossy(&get(admin, "/metrics").await.body).to_string();
        (metric(&text, "taxgate_shadow_decisions_total ") == Some(12)).then_some(text)
    })
    .await;
    assert_eq!(
        metric(
            &m,
            "taxgate_shadow_disagreements_total{kind=\"allow_to_deny\"} "
        ),
        Some(2),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "taxgate_shadow_disagreements_total{kind=\"deny_to_allow\"} "
        ),
        Some(3)
    );
    assert_eq!(metric(&m, "taxgate_shadow_dropped_total "), Some(0));

    let status = get(env.gw.admin, "/admin/policies").await.json();
    let enforced = status["version"].as_str().unwrap();
    let shadow_version = status["shadow"]["version"].as_str().unwrap();
    assert_eq!(shadow_version.len(), 64);
    assert_ne!(enforced, shadow_version);
    assert_eq!(status["shadow"]["disagreements"]["allow_to_deny"], 2);
    assert_eq!(status["shadow"]["disagreements"]["deny_to_allow"], 3);
    assert_eq!(status["shadow"]["decisions"], 12);

    // The audit log has the 12 enforced decisions (as enforced) and 5 disagreement events.
    recorded(&env, 12).await;
    let store = env.gw.core.store.clone();
    eventually(Duration::from_secs(10), "disagreements audited", || {
        let store = store.clone();
        async move { (store.count_audit().await.unwrap() == before + 12 + 5).then_some(()) }
    })
    .await;
    let decisions = store.recorded_decisions(0, 100).await.unwrap();
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 7);
    assert!(
        decisions
            .iter()
            .all(|d| d.policy_version.as_deref() == Some(enforced))
    );
    env.gw.stop().await;
}

async fn reload(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = send(
        admin,
        http::Request::post("/admin/policies/reload")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

#[tokio::test]
async fn the_gate_refuses_a_widening_reload_and_accepts_a_narrowing_one() {
    let (env, policies, _config) = start("gate_on_widening = true\ngate_window_hours = 1").await;
    let s = log_in(&env).await;
    scripted_traffic(&env, &s).await;
    recorded(&env, 11).await;
    let v1 = get(env.gw.admin, "/admin/policies").await.json()["version"]
        .as_str()
        .unwrap()
        .to_string();

    // Widening: refused, the last good set keeps deciding.
    std::fs::write(policies.join("zz_change.cedar"), PERSONAL_FOR_ALL).unwrap();
    let refused = reload(env.gw.admin).await;
    assert_eq!(refused["version"], v1.as_str(), "{refused}");
    let error = refused["last_error"].as_str().unwrap();
    assert!(error.contains("widening gate"), "{error}");
    assert!(error.contains("2 deny→allow"), "{error}");
    assert_eq!(refused["gate"]["accepted"], false);
    assert_eq!(refused["gate"]["refusals"], 1);
    assert_ne!(refused["gate"]["candidate"], v1.as_str());
    let a = env.get("/api/personal/iit", Some(&s.wang)).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the widening set is not active"
    );
    let m = String::from_utf8_lossy(&get(env.gw.admin, "/metrics").await.body).to_string();
    assert_eq!(
        metric(&m, "taxgate_policy_gate_refusals_total "),
        Some(1),
        "{m}"
    );
    assert_eq!(metric(&m, "taxgate_policy_last_reload_failed "), Some(1));

    // Narrowing: accepted and active at once.
    std::fs::write(policies.join("zz_change.cedar"), NO_INVOICE).unwrap();
    let accepted = reload(env.gw.admin).await;
    assert_ne!(accepted["version"], v1.as_str(), "{accepted}");
    assert_eq!(accepted["last_error"], serde_json::Value::Null);
    assert_eq!(accepted["gate"]["accepted"], true);
    assert_eq!(accepted["gate"]["candidate"], accepted["version"]);
    assert!(
        accepted["gate"]["message"]
            .as_str()
            .unwrap()
            .contains("2 allow→deny"),
        "{accepted}"
    );
    let a = env.get("/api/invoice/issue", Some(&s.wang)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error_code(), "not_permitted");
    let m = String::from_utf8_lossy(&get(env.gw.admin, "/metrics").await.body).to_string();
    assert_eq!(metric(&m, "taxgate_policy_gate_refusals_total "), Some(1));
    assert_eq!(metric(&m, "taxgate_policy_last_reload_failed "), Some(0));
    env.gw.stop().await;
}
