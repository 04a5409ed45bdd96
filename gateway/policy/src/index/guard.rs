//! Guards: what a policy's own text says about the principal before anything can fail, used to
//! leave out the policies that cannot apply to a request without asking Cedar about them.
//!
//! Cedar evaluates a policy as `principal scope && action scope && resource scope && when… &&
//! !unless…`, left to right, stopping at the first `false`. So when a policy's principal scope
//! is `principal in E` and the principal is not `E` nor below it, or when a leading conjunct of
//! its first `when` is certainly `false` for this principal (and every conjunct before it
//! certainly `true`), the policy evaluates to `false` without an error: it is neither satisfied
//! nor erroring, and leaving it out of the request's set changes nothing in the answer. The
//! conjuncts read here are the ones that cannot fail to evaluate:
//! - `principal has a`: `false` when the principal has no `a` (or is not in the entities);
//! - `principal.a == literal` (either side), when the principal has `a`: Cedar's `==` is `false`
//!   between values of different types and never fails;
//! - `principal.a`, when `a` is a boolean.
//!
//! Anything else ends the guard and the policy is kept: keeping a policy is always exact, since
//! Cedar then decides it. [`Facts`] is what one request's principal shows of those attributes;
//! the buckets of policies are cached by it (see `index`).

use std::str::FromStr;

use cedar_policy::{
    Entities, EntityId, EntityTypeName, EntityUid, EvalResult, Policy, PrincipalConstraint,
};
use serde_json::Value;

/// One conjunct the guard can read.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// `principal has attr`.
    Has(usize),
    /// `principal.attr == literal`.
    Eq(usize, Literal),
    /// `principal.attr` (a boolean).
    True(usize),
}

/// A literal a guard compares with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Literal {
    Bool(bool),
    Long(i64),
    String(String),
    Entity(EntityUid),
}

/// What the guard reads of a policy: its principal scope's entity (`principal in E`) and the
/// leading conjuncts of its first `when`, attributes numbered in the [`Attrs`] of its action.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    principal_in: Option<usize>,
    tests: Vec<Test>,
}

/// The attribute names and `in` entities the guards of one action read, numbered.
#[derive(Debug, Default)]
pub(crate) struct Attrs {
    names: Vec<String>,
    ins: Vec<EntityUid>,
}

impl Attrs {
    fn attr(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        }
    }

    fn entity(&mut self, uid: EntityUid) -> usize {
        match self.ins.iter().position(|u| *u == uid) {
            Some(i) => i,
            None => {
                self.ins.push(uid);
                self.ins.len() - 1
            }
        }
    }

    /// Nothing to read: every request gets the same bucket.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ins.is_empty()
    }

    /// What the request's principal shows of the attributes and entities the guards read.
    pub fn facts(&self, principal: &EntityUid, entities: &Entities) -> Facts {
        let entity = entities.get(principal);
        let attrs = self
            .names
            .iter()
            .map(|name| match entity.and_then(|e| e.attr(name)) {
                None => Seen::Absent,
                Some(Ok(EvalResult::Bool(b))) => Seen::Is(Literal::Bool(b)),
                Some(Ok(EvalResult::Long(n))) => Seen::Is(Literal::Long(n)),
                Some(Ok(EvalResult::String(s))) => Seen::Is(Literal::String(s)),
                Some(Ok(EvalResult::EntityUid(u))) => Seen::Is(Literal::Entity(u)),
                // A set, a record, an extension value or an unknown: present, not compared.
                Some(_) => Seen::Other,
            })
            .collect();
        let ins = if self.ins.is_empty() {
            Vec::new()
        } else {
            let ancestors: Vec<&EntityUid> = entities
                .ancestors(principal)
                .map(|a| a.collect())
                .unwrap_or_default();
            self.ins
                .iter()
                .map(|e| e == principal || ancestors.contains(&e))
                .collect()
        };
        Facts { attrs, ins }
    }

    /// The guard of `policy` (`json`: its JSON form), numbering what it reads in `self`.
    pub fn guard(&mut self, policy: &Policy, json: Option<&Value>) -> Guard {
        let principal_in = match policy.principal_constraint() {
            PrincipalConstraint::In(e) | PrincipalConstraint::IsIn(_, e) => Some(self.entity(e)),
            PrincipalConstraint::Any | PrincipalConstraint::Eq(_) | PrincipalConstraint::Is(_) => {
                None
            }
        };
        let mut tests = Vec::new();
        if let Some(json) = json {
            let first = json
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.first());
            if let Some(cond) = first
                && cond.get("kind").and_then(Value::as_str) == Some("when")
                && let Some(body) = cond.get("body")
            {
                let mut conjuncts = Vec::new();
                flatten_and(body, &mut conjuncts);
                for c in conjuncts {
                    match self.test(c) {
                        Some(t) => tests.push(t),
                        None => break,
                    }
                }
            }
        }
        Guard {
            principal_in,
            tests,
        }
    }

    fn test(&mut self, e: &Value) -> Option<Test> {
        if let Some(has) = e.get("has") {
            let attr = has.get("attr")?.as_str()?;
            return is_principal(has.get("left")?).then(|| Test::Has(self.attr(attr)));
        }
        if let Some(eq) = e.get("==") {
            let (l, r) = (eq.get("left")?, eq.get("right")?);
            let (attr, lit) = match (principal_attr(l), principal_attr(r)) {
                (Some(a), None) => (a, literal(r)?),
                (None, Some(a)) => (a, literal(l)?),
                _ => return None,
            };
            return Some(Test::Eq(self.attr(attr), lit));
        }
        principal_attr(e).map(|a| Test::True(self.attr(a)))
    }
}

/// The conjuncts of `a && b && …`, leftmost first (Cedar's `&&` associates to the left).
fn flatten_and<'a>(e: &'a Value, out: &mut Vec<&'a Value>) {
    match e.get("&&") {
        Some(and) => {
            if let (Some(l), Some(r)) = (and.get("left"), and.get("right")) {
                flatten_and(l, out);
                flatten_and(r, out);
            } else {
                out.push(e);
            }
        }
        None => out.push(e),
    }
}

fn is_principal(e: &Value) -> bool {
    e.get("Var").and_then(Value::as_str) == Some("principal")
}

/// `principal.attr` → `attr`.
fn principal_attr(e: &Value) -> Option<&str> {
    let get = e.get(".")?;
    is_principal(get.get("left")?)
        .then(|| get.get("attr").and_then(Value::as_str))
        .flatten()
}

fn literal(e: &Value) -> Option<Literal> {
    match e.get("Value")? {
        Value::Bool(b) => Some(Literal::Bool(*b)),
        Value::Number(n) => n.as_i64().map(Literal::Long),
        Value::String(s) => Some(Literal::String(s.clone())),
        Value::Object(o) => {
            let entity = o.get("__entity")?;
            let ty = EntityTypeName::from_str(entity.get("type")?.as_str()?).ok()?;
            let id = EntityId::new(entity.get("id")?.as_str()?);
            Some(Literal::Entity(EntityUid::from_type_name_and_id(ty, id)))
        }
        _ => None,
    }
}

/// One attribute as the principal shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seen {
    /// The principal has no such attribute (or is not in the entities).
    Absent,
    /// A value the guards can compare.
    Is(Literal),
    /// Present, but not a value the guards compare.
    Other,
}

/// What one request's principal shows the guards of an action: the key of its bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Facts {
    attrs: Vec<Seen>,
    ins: Vec<bool>,
}

impl Guard {
    /// Whether the policy certainly evaluates to `false`, without an error, for a principal
    /// showing `facts`: then the request need not evaluate it.
    pub fn excludes(&self, facts: &Facts) -> bool {
        if let Some(i) = self.principal_in
            && facts.ins.get(i) == Some(&false)
        {
            return true;
        }
        for t in &self.tests {
            let seen = |i: &usize| facts.attrs.get(*i).unwrap_or(&Seen::Other);
            match t {
                Test::Has(i) => match seen(i) {
                    Seen::Absent => return true,
                    Seen::Is(_) | Seen::Other => {}
                },
                Test::Eq(i, lit) => match seen(i) {
                    Seen::Is(v) if v == lit => {}
                    // Values of any types: `==` is false, never an error.
                    Seen::Is(_) => return true,
                    // Missing: the conjunct fails to evaluate, which Cedar must report.
                    Seen::Absent | Seen::Other => return false,
                },
                Test::True(i) => match seen(i) {
                    Seen::Is(Literal::Bool(true)) => {}
                    Seen::Is(Literal::Bool(false)) => return true,
                    // Missing or not a boolean: an evaluation error, Cedar's to report.
                    _ => return false,
                },
            }
        }
        false
    }
}

/// Buckets by facts, bounded: past [`MAX_BUCKETS`] distinct facts a request's bucket is made
/// for it and not kept (the facts of real sessions take a few dozen).
pub(crate) const MAX_BUCKETS: usize = 1024;

/// A policy with its guard.
pub(crate) struct Guarded {
    pub policy: Policy,
    pub guard: Guard,
}

impl Guard {
    /// (reads a principal scope, number of conjuncts read), for the tests.
    #[cfg(test)]
    pub fn summary(&self) -> (bool, usize) {
        (self.principal_in.is_some(), self.tests.len())
    }
}
