//! Engine tests on the repository's policy set and on broken copies of it.

use super::*;

use crate::testing::repo_policies;

#[test]
fn repository_policies_load() {
    let engine = match PolicyEngine::load(repo_policies()) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let set = engine.current();
    for w in &set.warnings {
        println!("warning: {w}");
    }
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    assert_eq!(set.version.len(), 64);
    assert_eq!(
        engine.downstream_actions(),
        ["declare", "invoice", "personal_tax", "query", "tax_affairs"]
    );
}

use crate::testing::{copy_dir, copy_policies};

fn load_errors(dir: &std::path::Path) -> Vec<String> {
    match load::compile(dir) {
        Ok(_) => panic!("a broken set compiled"),
        Err(e) => e.0,
    }
}

const EXTRA: &str = "zz_extra.cedar";

fn with_extra(text: &str) -> (tempfile::TempDir, Vec<String>) {
    let dir = copy_policies();
    std::fs::write(dir.path().join(EXTRA), text).unwrap();
    let errors = load_errors(dir.path());
    (dir, errors)
}

#[test]
fn syntax_error_names_file_and_line() {
    let (_d, errors) = with_extra(
        "// ok\n@id(\"a\")\npermit(principal, action, resource);\n\n@id(\"b\")\npermit(principal, action resource);\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("zz_extra.cedar:6:"), "{errors:?}");
}

#[test]
fn schema_violation_names_file_and_line() {
    let (_d, errors) = with_extra(
        "@id(\"typo\")\npermit(principal is Session, action == Action::\"declare\", resource)\nwhen {\n  principal.must_change_pasword\n};\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("zz_extra.cedar:4:"), "{errors:?}");
    let (_d, errors) = with_extra(
        "@id(\"enum\")\npermit(principal is Session, action == Action::\"declare\", resource)\nwhen { principal.entry == Entry::\"enterprize\" };\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("zz_extra.cedar:"), "{errors:?}");
}

#[test]
fn duplicate_and_missing_ids_are_errors() {
    let (_d, errors) = with_extra(
        "@id(\"session.view_and_logout\")\npermit(principal, action, resource);\n\npermit(principal, action, resource);\n",
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("zz_extra.cedar:1: duplicate"),
        "{errors:?}"
    );
    assert!(errors[0].contains("session.cedar:"), "{errors:?}");
    assert!(
        errors[1].starts_with("zz_extra.cedar:4: policy has no @id"),
        "{errors:?}"
    );
}

#[test]
fn forbid_without_reason_is_an_error_and_unknown_reason_a_warning() {
    let (_d, errors) = with_extra("@id(\"f\")\nforbid(principal, action, resource);\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("no @reason"), "{errors:?}");

    let dir = copy_policies();
    std::fs::write(
        dir.path().join(EXTRA),
        "@id(\"f\")\n@reason(\"brand_new_code\")\nforbid(principal, action, resource) when { false };\n",
    )
    .unwrap();
    let compiled = load::compile(dir.path()).unwrap();
    assert!(
        compiled
            .warnings
            .iter()
            .any(|w| w.starts_with("zz_extra.cedar:1:") && w.contains("brand_new_code")),
        "{:?}",
        compiled.warnings
    );
}

#[test]
fn broken_set_is_never_activated_and_last_good_stays() {
    let dir = copy_policies();
    let engine = PolicyEngine::load(dir.path()).unwrap();
    let good = engine.version();
    for broken in [
        "@id(\"x\")\npermit(principal, action, resource)\n",
        "@id(\"x\")\npermit(principal, action == Action::\"no_such_action\", resource);\n",
        "@id(\"session.view_and_logout\")\npermit(principal, action, resource);\n",
    ] {
        std::fs::write(dir.path().join(EXTRA), broken).unwrap();
        assert!(engine.reload().is_err());
        assert_eq!(engine.version(), good);
        let status = engine.status();
        assert_eq!(status.version, *good);
        assert!(status.last_error.is_some_and(|e| e.contains(EXTRA)));
    }
    assert_eq!(engine.counters().failed_reloads, 3);
    // A broken set also refuses to start.
    assert!(PolicyEngine::load(dir.path()).is_err());
    // Fixing it activates the new version and clears the error.
    std::fs::write(
        dir.path().join(EXTRA),
        "@id(\"x\")\npermit(principal, action == Action::\"view_session\", resource);\n",
    )
    .unwrap();
    let v = engine.reload().unwrap();
    assert_ne!(v, good);
    assert_eq!(engine.status().last_error, None);
    assert_eq!(engine.counters().reloads, 2);
}

#[test]
fn repository_policy_tests_all_pass() {
    let (out, ok) = commands::test(&repo_policies());
    println!("{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.ends_with(" 0 failed"), "{out}");
    assert!(ok, "{out}");
}

#[test]
fn policy_tests_can_fail() {
    let dir = copy_policies();
    std::fs::write(
        dir.path().join("tests/zz_wrong.json"),
        r#"{"cases": [
            {"name": "wrong decision", "now": 0, "action": "invoice",
             "session": {"entry": "enterprise", "role": "tax_handler", "binding": {}}, "expect": "allow"},
            {"name": "wrong reason", "now": 0, "action": "login",
             "session": {"entry": "enterprise"}, "expect": "deny", "reason": "binding_pending"}
        ]}"#,
    )
    .unwrap();
    let (out, ok) = commands::test(dir.path());
    assert!(!ok);
    assert!(
        out.lines().last().unwrap().ends_with(" passed, 2 failed"),
        "{out}"
    );
    assert!(out.contains("FAIL tests/zz_wrong.json: wrong reason: expected reason `binding_pending`, got `not_linked`"), "{out}");

    // A policy change that breaks a rule is caught by the repository's own cases.
    let dir = copy_policies();
    let path = dir.path().join("enterprise.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("principal.binding.person_confirmed", "true"),
    )
    .unwrap();
    let (out, ok) = commands::test(dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "FAIL tests/enterprise_entry.json: binding the person has not confirmed is pending"
        ),
        "{out}"
    );
}

#[test]
fn validate_and_explain_output() {
    let (out, ok) = commands::validate(&repo_policies());
    assert!(ok, "{out}");
    assert!(out.starts_with("ok: "), "{out}");

    let (out, ok) = commands::explain(
        &repo_policies(),
        &repo_policies().join("tests/enterprise_entry.json"),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("enterprise.binding_confirmed  (enterprise.cedar:"),
        "{out}"
    );
    assert!(out.contains("reason:   binding_pending"), "{out}");

    let (_d, errors) = with_extra("@id(\"x\")\npermit(principal, action, resource)\n");
    assert!(!errors.is_empty());
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn watcher_applies_changes_and_survives_directory_replacement() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("policies");
    copy_dir(&repo_policies(), &dir);
    let engine = std::sync::Arc::new(PolicyEngine::load(&dir).unwrap());
    let _watcher = watch(engine.clone()).unwrap();
    let v0 = engine.version();

    // A valid change is applied.
    std::fs::write(
        dir.join(EXTRA),
        "@id(\"x\")\npermit(principal, action == Action::\"view_session\", resource);\n",
    )
    .unwrap();
    wait_for("the change", || engine.version() != v0);
    let v1 = engine.version();

    // A broken change is refused; the last good set stays.
    std::fs::write(
        dir.join(EXTRA),
        "@id(\"x\")\npermit(principal, action, resource)\n",
    )
    .unwrap();
    wait_for("the refused reload", || {
        engine.counters().failed_reloads >= 1
    });
    assert_eq!(engine.version(), v1);
    assert!(engine.status().last_error.is_some());

    // The directory is deleted (still serving v1) and recreated: the watch is re-armed.
    std::fs::remove_dir_all(&dir).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(engine.version(), v1);
    copy_dir(&repo_policies(), &dir);
    wait_for("the recreated directory", || engine.version() == v0);
    assert_eq!(engine.status().last_error, None);

    // And later edits in the recreated directory are seen.
    std::fs::write(
        dir.join(EXTRA),
        "@id(\"y\")\npermit(principal, action == Action::\"logout\", resource);\n",
    )
    .unwrap();
    wait_for("an edit after recreation", || engine.version() != v0);
}

#[test]
fn engine_types_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicyEngine>();
    assert_send_sync::<EntitySlice>();
    assert_send_sync::<Decision>();
    assert_send_sync::<ActiveSet>();
}

#[test]
fn status_and_messages() {
    let engine = PolicyEngine::load(repo_policies()).unwrap();
    let status = engine.status();
    assert_eq!(status.version.len(), 64);
    assert!(
        time::OffsetDateTime::parse(
            &status.loaded_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert_eq!(status.last_error, None);
    let (zh, en) = engine.message("binding_pending");
    assert!(zh.contains("双向确认"), "{zh}");
    assert!(en.contains("confirmed"), "{en}");
    let (zh, _) = engine.message("no_such_code");
    assert!(!zh.is_empty());
    assert!(engine.is_downstream_action("declare"));
    assert!(!engine.is_downstream_action("manage_personnel"));
    assert!(!engine.is_downstream_action("login"));
    // Every @reason of the repository's set has a message.
    let set = engine.current();
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
}

#[test]
fn unknown_action_is_denied() {
    let engine = PolicyEngine::load(repo_policies()).unwrap();
    let facts: cases::SessionFacts =
        serde_json::from_str(r#"{"entry": "enterprise", "role": "admin", "binding": {}}"#).unwrap();
    let slice = EntitySlice::build(&cases::session_slice(&facts).unwrap()).unwrap();
    let d = engine.decide(&slice, "no_such_action", &RequestFacts::at(0));
    assert!(!d.allowed);
    assert_eq!(d.reason.as_deref(), Some(NOT_PERMITTED));
}

/// A gate that refuses sets containing a marker policy id.
struct RefuseMarked;

impl ReloadGate for RefuseMarked {
    fn check(&self, candidate: &ActiveSet) -> Result<String, String> {
        if candidate.policy_ids().iter().any(|id| id == "marked") {
            Err("marked set".to_string())
        } else {
            Ok("fine".to_string())
        }
    }
}

#[test]
fn a_gate_refusal_keeps_the_last_good_set_and_is_reported() {
    let dir = copy_policies();
    let engine = PolicyEngine::load(dir.path()).unwrap();
    assert!(engine.set_gate(Arc::new(RefuseMarked)));
    assert!(!engine.set_gate(Arc::new(RefuseMarked)), "set once");
    let good = engine.version();
    std::fs::write(
        dir.path().join(EXTRA),
        "@id(\"marked\")\npermit(principal, action == Action::\"view_session\", resource);\n",
    )
    .unwrap();
    assert!(matches!(engine.reload(), Err(AuthzError::Gate(_))));
    assert_eq!(engine.version(), good);
    let status = engine.status();
    assert_eq!(status.last_error.as_deref(), Some("marked set"));
    let gate = status.gate.unwrap();
    assert!(!gate.accepted);
    assert_eq!(gate.refusals, 1);
    assert_ne!(gate.candidate, *good);
    assert_eq!(engine.counters().gate_refusals, 1);
    assert_eq!(engine.counters().failed_reloads, 1);

    std::fs::write(
        dir.path().join(EXTRA),
        "@id(\"unmarked\")\npermit(principal, action == Action::\"view_session\", resource);\n",
    )
    .unwrap();
    let v = engine.reload().unwrap();
    assert_ne!(v, good);
    let status = engine.status();
    assert_eq!(status.last_error, None);
    let gate = status.gate.unwrap();
    assert!(gate.accepted);
    assert_eq!((gate.candidate.as_str(), gate.refusals), (&*v, 1));
}

#[test]
fn test_coverage_lists_what_the_cases_never_reach() {
    let dir = copy_policies();
    std::fs::write(
        dir.path().join(EXTRA),
        "@id(\"zz.never\")\n@reason(\"not_permitted\")\n\
         forbid(principal, action == Action::\"declare\", resource) when { context.now < 0 };\n",
    )
    .unwrap();
    let (out, ok) = commands::test_with(dir.path(), true);
    assert!(ok, "{out}");
    assert!(out.contains("coverage:"), "{out}");
    let never = out
        .lines()
        .find(|l| l.starts_with("never fired"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(never.contains("zz.never"), "{never}");
    // A policy the cases do reach is counted, not listed as never fired.
    assert!(
        !never.contains("role_defaults.legal_representative"),
        "{never}"
    );
    assert!(out.lines().last().unwrap().ends_with(" 0 failed"));
    // Without --coverage the output is as before.
    let (plain, _) = commands::test(dir.path());
    assert!(!plain.contains("coverage:"));
}

#[test]
fn step_up_max_age_is_read_from_the_deciding_forbid() {
    for bad in ["0", "-5", "ten", ""] {
        let (_d, errors) = with_extra(&format!(
            "@id(\"f\")\n@reason(\"step_up_required\")\n@step_up_max_age(\"{bad}\")\nforbid(principal, action, resource) when {{ false }};\n"
        ));
        assert!(
            errors.iter().any(|e| e.contains("@step_up_max_age")),
            "{bad}: {errors:?}"
        );
    }
    let (_d, errors) = with_extra(
        "@id(\"p\")\n@step_up_max_age(\"60\")\npermit(principal, action, resource) when { false };\n",
    );
    assert!(
        errors.iter().any(|e| e.contains("@step_up_max_age")),
        "{errors:?}"
    );

    // The repository's rule: a stale factor is refused with its max age; another refusal has none.
    let engine = PolicyEngine::load(repo_policies()).unwrap();
    let now = 1_750_000_000;
    let mut person = crate::cases::SessionFacts::confirmed_enterprise(
        taxgate_model::Role::TaxHandler,
        crate::cases::BindingFacts::default(),
    );
    person.entry = taxgate_model::Entry::Person;
    person.role = None;
    person.binding = None;
    person.factor_at = Some(crate::cases::Time::Seconds(now - 601));
    let stale = EntitySlice::build(&crate::cases::session_slice_at(&person, now).unwrap()).unwrap();
    let d = engine.decide(&stale, "change_phone", &RequestFacts::at(now));
    assert_eq!(d.reason.as_deref(), Some("step_up_required"), "{d:?}");
    assert_eq!(d.step_up_max_age, Some(600));
    person.factor_at = Some(crate::cases::Time::Seconds(now - 600));
    let fresh = EntitySlice::build(&crate::cases::session_slice_at(&person, now).unwrap()).unwrap();
    let d = engine.decide(&fresh, "change_phone", &RequestFacts::at(now));
    assert!(d.allowed, "{d:?}");
    let d = engine.decide(&fresh, "declare", &RequestFacts::at(now));
    assert!(!d.allowed);
    assert_eq!(d.step_up_max_age, None);
}
