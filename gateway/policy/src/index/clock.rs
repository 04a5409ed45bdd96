//! The clock: until when a decision stays the same while only the time moves.
//!
//! A session's decision is a pure function of its entity slice, the action, the policy set and
//! the request facts, and of the facts only the time (`context.now`) changes from one request to
//! the next. When every use of `context.now` in the policies of an action is a comparison of the
//! form `now + c₁ OP x + c₂` (OP one of `<`, `<=`, `>`, `>=`, `==`, `!=`; `c₁`, `c₂` integer
//! literals, either absent; `x` an attribute path from `principal`, `resource` or `context`, or
//! an integer literal), each such comparison changes its value only where `now` crosses the
//! breakpoint `b = x + c₂ − c₁`: it is constant on `now < b`, at `now = b` and on `now > b`.
//! Everything else the policies compute does not involve the time. So a decision made at `now`
//! is also the decision at every second up to (not including) the nearest breakpoint after
//! `now`, or only at `now` itself when `now` is a breakpoint ([`Clock::until`]).
//!
//! Anything else the analysis does not recognise (the time in arithmetic with an attribute, in
//! a set, passed to a function, the whole `context` record used as a value, a policy without a
//! JSON form) makes the action's clock [`Clock::Unknown`]: its decisions hold for one second
//! only, as before this analysis. A path that does not resolve to an integer in the slice is not
//! a breakpoint: Cedar then fails on it (or never reaches it) whatever the time, so it does not
//! change with the time either. Checked against fresh decisions by the property test in
//! `index/tests.rs`.

use cedar_policy::{Entities, EntityUid, EvalResult};
use serde_json::Value;

use crate::RequestFacts;

/// The breakpoints of one action's policies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Clock {
    /// Every use of the time is a recognised comparison; these are their breakpoints.
    Known(Vec<Term>),
    /// A use of the time that is not recognised: decisions hold for their second only.
    Unknown,
}

/// A breakpoint `value(path) + offset` (`path` empty: the literal `offset` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    root: Root,
    path: Vec<String>,
    offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Principal,
    Resource,
    Context,
    /// A literal: the breakpoint is the offset.
    Literal,
}

/// Offsets larger than this make the clock unknown: `now + c` could overflow for real times.
const MAX_OFFSET: i64 = 1 << 40;
/// Times outside ±this are decided for their second only (no breakpoint arithmetic near the
/// ends of `i64`).
const MAX_TIME: i64 = 1 << 60;

impl Clock {
    /// The clock of `policies`, read from their JSON forms (`None`: not available, unknown).
    pub fn of<'a>(policies: impl IntoIterator<Item = Option<&'a Value>>) -> Clock {
        let mut terms = Vec::new();
        for json in policies {
            let Some(json) = json else {
                return Clock::Unknown;
            };
            let conditions = match json.get("conditions") {
                None => continue,
                Some(Value::Array(c)) => c,
                Some(_) => return Clock::Unknown,
            };
            for c in conditions {
                let Some(body) = c.get("body") else {
                    return Clock::Unknown;
                };
                if scan(body, &mut terms).is_err() {
                    return Clock::Unknown;
                }
            }
        }
        let mut unique: Vec<Term> = Vec::with_capacity(terms.len());
        for t in terms {
            if !unique.contains(&t) {
                unique.push(t);
            }
        }
        Clock::Known(unique)
    }

    /// The first second after `facts.now` at which a decision of this action on `entities`
    /// (for `principal` and `resource`) may differ from the one at `facts.now`, the other facts
    /// unchanged: `now + 1` when `now` is itself a breakpoint or the clock is unknown,
    /// `i64::MAX` when no breakpoint lies ahead.
    pub fn until(
        &self,
        principal: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
        facts: &RequestFacts,
    ) -> i64 {
        let now = facts.now;
        let next_second = now.saturating_add(1);
        let Clock::Known(terms) = self else {
            return next_second;
        };
        if !(-MAX_TIME..=MAX_TIME).contains(&now) {
            return next_second;
        }
        let mut until = i64::MAX;
        for t in terms {
            let Some(b) = t.breakpoint(principal, resource, entities, facts) else {
                continue;
            };
            if b == now {
                return next_second;
            }
            if b > now {
                until = until.min(b);
            }
        }
        until
    }
}

impl Term {
    fn breakpoint(
        &self,
        principal: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
        facts: &RequestFacts,
    ) -> Option<i64> {
        let value = match self.root {
            Root::Literal => return Some(self.offset),
            Root::Context => {
                let (first, rest) = self.path.split_first()?;
                if !rest.is_empty() {
                    // RequestContext has no records: Cedar fails on such a path.
                    return None;
                }
                match first.as_str() {
                    "now" => return None,
                    "legacy_login_until" => facts.legacy_login_until?,
                    // Not in RequestContext: Cedar fails on it, whatever the time.
                    _ => return None,
                }
            }
            Root::Principal => resolve(principal, &self.path, entities)?,
            Root::Resource => resolve(resource, &self.path, entities)?,
        };
        value.checked_add(self.offset)
    }
}

/// The integer at `path` from the entity `start` (through entity references and records).
fn resolve(start: &EntityUid, path: &[String], entities: &Entities) -> Option<i64> {
    let (first, rest) = path.split_first()?;
    let mut value = entities.get(start)?.attr(first)?.ok()?;
    for attr in rest {
        value = match value {
            EvalResult::EntityUid(uid) => entities.get(&uid)?.attr(attr)?.ok()?,
            EvalResult::Record(record) => record.get(attr)?.clone(),
            _ => return None,
        };
    }
    match value {
        EvalResult::Long(n) => Some(n),
        _ => None,
    }
}

/// The error of an unrecognised use of the time.
struct Unrecognised;

/// Read the breakpoints of `e` into `terms`; `Err` at a use of the time that is not a
/// recognised comparison.
fn scan(e: &Value, terms: &mut Vec<Term>) -> Result<(), Unrecognised> {
    match e {
        Value::Object(map) => {
            if let Some((op, args)) = single(map)
                && matches!(op, "<" | "<=" | ">" | ">=" | "==" | "!=")
                && let (Some(l), Some(r)) = (args.get("left"), args.get("right"))
            {
                let (lt, rt) = (mentions_now(l), mentions_now(r));
                if lt || rt {
                    if lt && rt {
                        return Err(Unrecognised);
                    }
                    let (time, other) = if lt { (l, r) } else { (r, l) };
                    let c1 = time_offset(time).ok_or(Unrecognised)?;
                    let (root, path, c2) = operand(other).ok_or(Unrecognised)?;
                    let offset = c2.checked_sub(c1).ok_or(Unrecognised)?;
                    if offset.abs() > MAX_OFFSET {
                        return Err(Unrecognised);
                    }
                    terms.push(Term { root, path, offset });
                    return Ok(());
                }
            }
            if let Some(var) = map.get("Var").and_then(Value::as_str) {
                // The context as a whole (not one of its attributes) carries the time.
                return if var == "context" && map.len() == 1 {
                    Err(Unrecognised)
                } else {
                    Ok(())
                };
            }
            if let Some((op, args)) = single(map)
                && matches!(op, "." | "has")
                && let Some(left) = args.get("left")
                && is_var(left, "context")
            {
                return match (op, args.get("attr").and_then(Value::as_str)) {
                    // `context has now` is always true; `context.now` outside a comparison is
                    // a use the analysis cannot follow.
                    ("has", _) => Ok(()),
                    (".", Some("now")) | (".", None) => Err(Unrecognised),
                    (".", Some(_)) => Ok(()),
                    _ => Err(Unrecognised),
                };
            }
            if map.contains_key("Value") && map.len() == 1 {
                return Ok(());
            }
            map.values().try_for_each(|v| scan(v, terms))
        }
        Value::Array(items) => items.iter().try_for_each(|v| scan(v, terms)),
        _ => Ok(()),
    }
}

/// The one key of a JSON object and its value.
fn single(map: &serde_json::Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn is_var(e: &Value, name: &str) -> bool {
    e.get("Var").and_then(Value::as_str) == Some(name)
}

/// Whether `e` could depend on the time: it holds `context.now` or the whole `context`.
fn mentions_now(e: &Value) -> bool {
    let mut found = Vec::new();
    scan(e, &mut found).is_err() || !found.is_empty()
}

fn is_now(e: &Value) -> bool {
    e.get(".").is_some_and(|get| {
        get.get("left").is_some_and(|l| is_var(l, "context"))
            && get.get("attr").and_then(Value::as_str) == Some("now")
    })
}

fn long(e: &Value) -> Option<i64> {
    e.get("Value")?.as_i64()
}

/// `now`, `now + c`, `c + now`, `now - c` → `c` (`-c` for the last).
fn time_offset(e: &Value) -> Option<i64> {
    if is_now(e) {
        return Some(0);
    }
    let (op, args) = single(e.as_object()?)?;
    let (l, r) = (args.get("left")?, args.get("right")?);
    let c = match op {
        "+" if is_now(l) => long(r)?,
        "+" if is_now(r) => long(l)?,
        "-" if is_now(l) => long(r)?.checked_neg()?,
        _ => return None,
    };
    (c.abs() <= MAX_OFFSET).then_some(c)
}

/// An attribute path or an integer literal, plus or minus an integer literal.
fn operand(e: &Value) -> Option<(Root, Vec<String>, i64)> {
    if let Some(n) = long(e) {
        return Some((Root::Literal, Vec::new(), n));
    }
    if let Some((root, path)) = path(e) {
        return Some((root, path, 0));
    }
    let (op, args) = single(e.as_object()?)?;
    let (l, r) = (args.get("left")?, args.get("right")?);
    let (root, path, c) = match op {
        "+" => match (path(l), long(r), path(r), long(l)) {
            (Some((root, p)), Some(c), _, _) | (_, _, Some((root, p)), Some(c)) => (root, p, c),
            _ => return None,
        },
        "-" => {
            let (root, p) = path(l)?;
            (root, p, long(r)?.checked_neg()?)
        }
        _ => return None,
    };
    (c.abs() <= MAX_OFFSET).then_some((root, path, c))
}

/// `principal.a.b`, `resource.a`, `context.a` → the root and the attribute names.
fn path(e: &Value) -> Option<(Root, Vec<String>)> {
    let mut names = Vec::new();
    let mut cur = e;
    loop {
        if let Some(get) = cur.get(".") {
            names.push(get.get("attr")?.as_str()?.to_string());
            cur = get.get("left")?;
            continue;
        }
        let root = match cur.get("Var")?.as_str()? {
            "principal" => Root::Principal,
            "resource" => Root::Resource,
            "context" => Root::Context,
            _ => return None,
        };
        names.reverse();
        return (!names.is_empty()).then_some((root, names));
    }
}
