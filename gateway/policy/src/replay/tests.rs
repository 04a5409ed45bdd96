//! Replay on the repository's set and on changed copies of it, over decisions recorded from
//! sample sessions.

use std::collections::HashMap;

use taxgate_model::RecordedDecision;
use taxgate_model::model::{PermissionGroup, Role};

use super::*;
use crate::cases::{BindingFacts, SessionFacts, session_slice};
use crate::testing::{copy_policies, repo_policies};

const NOW: i64 = 1_800_000_000;
const ACTIONS: [&str; 5] = ["declare", "invoice", "query", "tax_affairs", "personal_tax"];

fn enterprise(role: Role, permissions: Option<Vec<PermissionGroup>>) -> SessionFacts {
    SessionFacts::confirmed_enterprise(
        role,
        BindingFacts {
            permissions,
            ..BindingFacts::default()
        },
    )
}

/// Every sample session asks for every downstream action once, decided by the repository's
/// set: the "recorded log". Returns the records and the slices by hash.
fn recorded() -> (Vec<RecordedDecision>, HashMap<String, String>) {
    let live = ActiveSet::compile(&repo_policies()).unwrap();
    let sessions = [
        enterprise(Role::LegalRepresentative, None),
        enterprise(Role::TaxHandler, None),
        enterprise(Role::InvoiceClerk, Some(vec![PermissionGroup::Invoice])),
    ];
    let mut records = Vec::new();
    let mut slices = HashMap::new();
    for (i, f) in sessions.iter().enumerate() {
        let slice = EntitySlice::build(&session_slice(f).unwrap()).unwrap();
        let (hash, json) = slice.replay_json().unwrap();
        slices.insert(hash.clone(), json);
        for (j, action) in ACTIONS.iter().enumerate() {
            let d = live.decide(&slice, action, &RequestFacts::at(NOW));
            records.push(RecordedDecision {
                id: format!("d{i}{j}"),
                at: NOW,
                entry: Some(f.entry),
                role: f.role,
                action: action.to_string(),
                path: Some(format!("/api/{action}/x")),
                allowed: d.allowed,
                policies: d.policies,
                reason: d.reason,
                policy_version: Some(d.version.to_string()),
                slice_hash: Some(hash.clone()),
                legacy_login_until: None,
            });
        }
    }
    (records, slices)
}

fn set_with(extra: &str) -> (tempfile::TempDir, ActiveSet) {
    let dir = copy_policies();
    std::fs::write(dir.path().join("zz_change.cedar"), extra).unwrap();
    let set = ActiveSet::compile(dir.path()).unwrap();
    (dir, set)
}

#[test]
fn the_same_set_flips_nothing() {
    let (records, slices) = recorded();
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let r = replay(&set, &records, &slices);
    assert_eq!(r.decisions, 15);
    assert_eq!(r.replayed, 15);
    assert_eq!(r.unchanged, 15);
    assert!(r.flips.is_empty() && !r.widens());
}

#[test]
fn a_narrowing_change_flips_exactly_its_allows() {
    let (records, slices) = recorded();
    // No more queries for anyone: legal representative and tax handler used to be allowed
    // (the invoice clerk's explicit permissions do not include query).
    let (_dir, set) = set_with(
        "@id(\"test.no_query\")\n@reason(\"not_permitted\")\n\
         forbid (principal, action == Action::\"query\", resource);\n",
    );
    let r = replay(&set, &records, &slices);
    assert_eq!((r.allow_to_deny, r.deny_to_allow), (2, 0));
    assert_eq!(r.unchanged, 13);
    assert!(!r.widens());
    let roles: Vec<&str> = r.flips.iter().map(|g| g.key.role.as_str()).collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.contains(&"legal_representative") && roles.contains(&"tax_handler"));
    for g in &r.flips {
        assert_eq!(g.key.kind, FlipKind::AllowToDeny);
        assert_eq!(g.key.action, "query");
        assert_eq!(g.key.replayed, "test.no_query");
        assert_eq!(g.count, 1);
        assert_eq!(g.examples.len(), 1);
        assert_eq!(
            g.examples[0].replayed_reason.as_deref(),
            Some("not_permitted")
        );
    }
}

#[test]
fn a_widening_change_is_found_and_grouped() {
    let (records, slices) = recorded();
    // Invoices for everyone in enterprise entry: the tax handler gains invoice (denied by
    // default); the others already had it.
    let (_dir, set) = set_with(
        "@id(\"test.invoice_for_all\")\n\
         permit (principal is Session, action == Action::\"invoice\", resource is Enterprise);\n",
    );
    let r = replay(&set, &records, &slices);
    assert_eq!((r.allow_to_deny, r.deny_to_allow), (0, 1));
    assert!(r.widens());
    let g = &r.flips[0];
    assert_eq!(
        (g.key.kind, g.key.role.as_str(), g.key.action.as_str()),
        (FlipKind::DenyToAllow, "tax_handler", "invoice")
    );
    assert_eq!(g.key.recorded, "not_permitted");
    assert_eq!(g.key.replayed, "test.invoice_for_all");
    assert_eq!(g.examples[0].id, "d11");
    assert!(r.summary().contains("1 deny→allow"), "{}", r.summary());
    let text = render_text(&r, NOW - 3600);
    assert!(text.contains("WIDENING"), "{text}");
}

#[test]
fn decisions_without_a_slice_are_counted_not_dropped() {
    let (mut records, mut slices) = recorded();
    records[0].slice_hash = None;
    let gone = records[5].slice_hash.clone().unwrap();
    slices.remove(&gone);
    let set = ActiveSet::compile(&repo_policies()).unwrap();
    let r = replay(&set, &records, &slices);
    // Record 0 has no slice; records 5..10 share the removed one.
    assert_eq!(r.decisions, 15);
    assert_eq!(r.not_replayable, 6);
    assert_eq!(r.replayed, 9);
}

#[test]
fn since_accepts_durations_and_times() {
    assert_eq!(parse_since("24h", NOW), Ok(NOW - 86_400));
    assert_eq!(parse_since("7d", NOW), Ok(NOW - 7 * 86_400));
    assert_eq!(parse_since("90m", NOW), Ok(NOW - 5400));
    assert_eq!(
        parse_since("2026-01-01T00:00:00+08:00", NOW),
        Ok(1_767_196_800)
    );
    for bad in ["", "h", "-1d", "yesterday", "7x", "1.5h"] {
        assert!(parse_since(bad, NOW).is_err(), "{bad}");
    }
}

#[test]
fn determining_keys() {
    let ids = vec!["a".to_string(), "b".to_string()];
    assert_eq!(determining(true, &ids, None), "a+b");
    assert_eq!(determining(false, &ids, Some("x")), "a");
    assert_eq!(
        determining(false, &[], Some("not_permitted")),
        "not_permitted"
    );
}
