//! Decision replay: recorded downstream decisions decided again with a candidate policy set.
//!
//! Every downstream decision is audited with the hash of the entity slice it saw and its
//! context values (`now` is the event time, `legacy_login_until` is recorded); the slice itself
//! is stored once in `audit_slices`. Replaying rebuilds the slice, decides with the candidate's
//! engine exactly as the live path does ([`ActiveSet::decide`]), and reports every flip
//! (allow→deny, deny→allow) grouped by entry, role, action and determining policies.
//!
//! Used by `taxgate policy replay` and by the widening gate on reload
//! (`[policies] gate_on_widening`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use taxgate_model::{RecordedDecision, Timestamp};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ActiveSet, Decision, EntitySlice, NOT_PERMITTED, RequestFacts};

/// Examples kept per group of flips.
pub const EXAMPLES_PER_GROUP: usize = 3;

/// Which way a replayed decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipKind {
    /// Recorded as denied, allowed by the candidate: the candidate widens access.
    DenyToAllow,
    /// Recorded as allowed, denied by the candidate: the candidate narrows access.
    AllowToDeny,
}

impl FlipKind {
    /// The snake_case name of the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            FlipKind::DenyToAllow => "deny_to_allow",
            FlipKind::AllowToDeny => "allow_to_deny",
        }
    }

    fn arrow(self) -> &'static str {
        match self {
            FlipKind::DenyToAllow => "deny→allow",
            FlipKind::AllowToDeny => "allow→deny",
        }
    }
}

/// What a group of flips has in common.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FlipKey {
    /// Which way the decisions changed.
    pub kind: FlipKind,
    /// The session's login entry; `-` when the session had none.
    pub entry: String,
    /// The session's role; `-` when the session had none.
    pub role: String,
    /// The action decided.
    pub action: String,
    /// The determining policies of the recorded decision (see [`determining`]).
    pub recorded: String,
    /// The determining policies of the candidate's decision.
    pub replayed: String,
}

/// One flipped decision, to look up in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlipExample {
    /// The audit id (`x-taxgate-decision`).
    pub id: String,
    /// RFC 3339.
    pub at: String,
    /// The request path.
    pub path: Option<String>,
    /// The recorded decision's denial reason.
    pub recorded_reason: Option<String>,
    /// The candidate's denial reason.
    pub replayed_reason: Option<String>,
}

/// The flips that share a [`FlipKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlipGroup {
    /// What they have in common.
    #[serde(flatten)]
    pub key: FlipKey,
    /// How many decisions flipped this way.
    pub count: u64,
    /// The first few of them ([`EXAMPLES_PER_GROUP`]).
    pub examples: Vec<FlipExample>,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Version of the candidate set the decisions were replayed against.
    pub candidate_version: String,
    /// Recorded decisions examined.
    pub decisions: u64,
    /// Decided again (the rest were not replayable).
    pub replayed: u64,
    /// Recorded without a slice (before slices were kept) or with a slice that is gone or
    /// unreadable: counted, never silently dropped.
    pub not_replayable: u64,
    /// Replayed with the recorded outcome.
    pub unchanged: u64,
    /// Allowed then, denied by the candidate.
    pub allow_to_deny: u64,
    /// Denied then, allowed by the candidate.
    pub deny_to_allow: u64,
    /// Deny→allow groups first, then by count (largest first).
    pub flips: Vec<FlipGroup>,
}

impl ReplayReport {
    /// The candidate allows something that was denied: it widens access.
    pub fn widens(&self) -> bool {
        self.deny_to_allow > 0
    }

    /// One line for logs and the gate's refusal message.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} decision(s) replayed against {}: {} deny→allow, {} allow→deny, {} unchanged, {} not replayable",
            self.replayed,
            short(&self.candidate_version),
            self.deny_to_allow,
            self.allow_to_deny,
            self.unchanged,
            self.not_replayable
        );
        let widening: Vec<String> = self
            .flips
            .iter()
            .filter(|g| g.key.kind == FlipKind::DenyToAllow)
            .take(3)
            .map(|g| {
                format!(
                    "{}×({} {} {} by {})",
                    g.count, g.key.entry, g.key.role, g.key.action, g.key.replayed
                )
            })
            .collect();
        if !widening.is_empty() {
            let _ = write!(s, "; widening: {}", widening.join(", "));
        }
        s
    }
}

fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// The determining policies of a decision as one grouping key: on allow the satisfied permits
/// joined by `+`; on deny the forbid that decided, or the reason when no policy decided
/// (`not_permitted`: no permit applied).
pub fn determining(allowed: bool, policies: &[String], reason: Option<&str>) -> String {
    if allowed {
        if policies.is_empty() {
            "(none)".to_string()
        } else {
            policies.join("+")
        }
    } else {
        match policies.first() {
            Some(p) => p.clone(),
            None => reason.unwrap_or(NOT_PERMITTED).to_string(),
        }
    }
}

fn rfc3339(at: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

/// Re-decides `records` with `candidate`. `slices` maps a slice hash to its recorded JSON.
pub fn replay(
    candidate: &ActiveSet,
    records: &[RecordedDecision],
    slices: &HashMap<String, String>,
) -> ReplayReport {
    let mut report = ReplayReport {
        candidate_version: candidate.version.to_string(),
        ..ReplayReport::default()
    };
    // Each distinct slice is parsed once; `None`: missing or unreadable.
    let mut parsed: HashMap<&str, Option<EntitySlice>> = HashMap::new();
    let mut groups: BTreeMap<FlipKey, (u64, Vec<FlipExample>)> = BTreeMap::new();
    for r in records {
        report.decisions += 1;
        let slice = r.slice_hash.as_deref().and_then(|hash| {
            parsed
                .entry(hash)
                .or_insert_with(|| {
                    slices
                        .get(hash)
                        .and_then(|json| EntitySlice::from_replay_json(json).ok())
                })
                .as_ref()
        });
        let Some(slice) = slice else {
            report.not_replayable += 1;
            continue;
        };
        report.replayed += 1;
        let facts = RequestFacts {
            now: r.at,
            legacy_login_until: r.legacy_login_until,
        };
        let d: Decision = candidate.decide(slice, &r.action, &facts);
        let kind = match (r.allowed, d.allowed) {
            (false, true) => FlipKind::DenyToAllow,
            (true, false) => FlipKind::AllowToDeny,
            _ => {
                report.unchanged += 1;
                continue;
            }
        };
        match kind {
            FlipKind::DenyToAllow => report.deny_to_allow += 1,
            FlipKind::AllowToDeny => report.allow_to_deny += 1,
        }
        let key = FlipKey {
            kind,
            entry: r.entry.map(|e| e.as_str()).unwrap_or("-").to_string(),
            role: r.role.map(|e| e.as_str()).unwrap_or("-").to_string(),
            action: r.action.clone(),
            recorded: determining(r.allowed, &r.policies, r.reason.as_deref()),
            replayed: determining(d.allowed, &d.policies, d.reason.as_deref()),
        };
        let (count, examples) = groups.entry(key).or_default();
        *count += 1;
        if examples.len() < EXAMPLES_PER_GROUP {
            examples.push(FlipExample {
                id: r.id.clone(),
                at: rfc3339(r.at),
                path: r.path.clone(),
                recorded_reason: r.reason.clone(),
                replayed_reason: d.reason.clone(),
            });
        }
    }
    report.flips = groups
        .into_iter()
        .map(|(key, (count, examples))| FlipGroup {
            key,
            count,
            examples,
        })
        .collect();
    report
        .flips
        .sort_by(|a, b| a.key.kind.cmp(&b.key.kind).then(b.count.cmp(&a.count)));
    report
}

/// `--since`: a duration back from `now` (`90m`, `24h`, `7d`, `2w`, `3600s`) or an RFC 3339 time.
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339).map(|t| t.unix_timestamp()) {
        return Ok(at);
    }
    let unit = text.chars().last().unwrap_or(' ');
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => 0,
    };
    let number = text[..text.len() - unit.len_utf8().min(text.len())].parse::<i64>();
    match number {
        Ok(n) if per > 0 && n >= 0 => Ok(now.saturating_sub(n.saturating_mul(per))),
        _ => Err(format!(
            "`{text}` is neither a duration like `24h`, `7d`, `90m` nor an RFC 3339 time like \
             `2026-11-01T00:00:00+08:00`"
        )),
    }
}

/// The report for people: totals, then each group with its examples.
pub fn render_text(report: &ReplayReport, since: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replayed {} of {} recorded decision(s) since {} against candidate {}",
        report.replayed,
        report.decisions,
        rfc3339(since),
        short(&report.candidate_version)
    );
    let _ = writeln!(
        out,
        "  unchanged: {}  allow→deny: {}  deny→allow: {}  not replayable: {}",
        report.unchanged, report.allow_to_deny, report.deny_to_allow, report.not_replayable
    );
    for g in &report.flips {
        let k = &g.key;
        let _ = writeln!(
            out,
            "\n{} ×{}  entry={} role={} action={}\n  recorded: {}\n  replayed: {}",
            k.kind.arrow(),
            g.count,
            k.entry,
            k.role,
            k.action,
            k.recorded,
            k.replayed
        );
        for e in &g.examples {
            let _ = writeln!(
                out,
                "  e.g. {} at {}{}",
                e.id,
                e.at,
                e.path
                    .as_deref()
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default()
            );
        }
    }
    if report.widens() {
        let _ = writeln!(
            out,
            "\nWIDENING: {} decision(s) denied today would be allowed by the candidate",
            report.deny_to_allow
        );
    } else {
        let _ = writeln!(out, "\nno deny→allow flips");
    }
    out
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests;
