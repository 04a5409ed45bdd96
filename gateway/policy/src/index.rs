//! The policy index: per action, the policies whose scope can match, split into a generic part
//! (per principal and resource type) and a specific part keyed by the entity a scope names
//! (`resource == E`, `resource in E`, `principal == P`).
//!
//! A request evaluates its generic set and the specific sets of its resource, the resource's
//! ancestors and its principal. Every policy whose scope can match the request is in one of
//! those sets, each policy is in at most one of them, and Cedar still checks every scope, so the
//! combined answer (see `decision`) equals the whole set's answer.
//!
//! Two refinements keep a decision to the few policies that can apply (issue 17: an uncached
//! decision went from ~30 µs to under 10):
//! - the generic set is cut into buckets by what the principal shows of the attributes the
//!   policies test first (`guard`: the entry, `must_change_password`, `has binding`, a role
//!   scope), leaving out only policies that certainly evaluate to `false` without an error;
//! - in its bucket, a policy's `action in [...]` scope, already matched, is evaluated as
//!   `action`, so Cedar does not build the set of listed actions on every request.
//!
//! Both are checked against the whole set by the property test in `index/tests.rs`.

mod clock;
mod guard;

pub(crate) use clock::Clock;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{
    ActionConstraint, Authorizer, Entities, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, Request, ResourceConstraint, Schema,
};

use super::decision::{Accumulator, Decision};
use super::load::PolicyMeta;

/// The index of one action.
pub(crate) struct ActionIndex {
    pub uid: EntityUid,
    /// Resource types of the action in the schema (declared order).
    pub resource_types: Vec<EntityTypeName>,
    /// (principal type, resource type, generic policies for that pair).
    by_types: Vec<(EntityTypeName, EntityTypeName, Generic)>,
    /// Generic policies of the action, whatever the types (for requests outside the schema).
    any_types: PolicySet,
    /// Policies whose scope names one entity, by that entity.
    specific: HashMap<EntityUid, PolicySet>,
    /// Until when this action's decisions hold as the time moves (see `clock`).
    pub clock: Clock,
}

/// The generic policies of one action and pair of types, and the buckets of them that
/// requests evaluate: each bucket leaves out what the guards (see `guard`) show cannot apply to
/// principals with those facts.
pub(crate) struct Generic {
    all: PolicySet,
    guarded: Vec<guard::Guarded>,
    attrs: guard::Attrs,
    buckets: RwLock<HashMap<guard::Facts, Arc<PolicySet>>>,
}

impl Generic {
    fn new<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        prepared: &HashMap<PolicyId, Prepared>,
    ) -> Self {
        let mut attrs = guard::Attrs::default();
        let guarded: Vec<guard::Guarded> = policies
            .into_iter()
            .map(|p| {
                let prep = prepared.get(p.id());
                guard::Guarded {
                    guard: attrs.guard(p, prep.and_then(|x| x.json.as_ref())),
                    policy: prep.map_or_else(|| p.clone(), |x| x.specialised.clone()),
                }
            })
            .collect();
        Generic {
            all: set_of(guarded.iter().map(|g| &g.policy)),
            guarded,
            attrs,
            buckets: RwLock::new(HashMap::new()),
        }
    }

    /// The policies a request of this principal evaluates: every policy of the pair but those
    /// its guard excludes for this principal.
    fn bucket(&self, principal: &EntityUid, entities: &Entities) -> Bucket<'_> {
        if self.attrs.is_empty() {
            return Bucket::All(&self.all);
        }
        let facts = self.attrs.facts(principal, entities);
        if let Some(set) = self
            .buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&facts)
        {
            return Bucket::Made(set.clone());
        }
        let set = Arc::new(set_of(
            self.guarded
                .iter()
                .filter(|g| !g.guard.excludes(&facts, &self.attrs))
                .map(|g| &g.policy),
        ));
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() < guard::MAX_BUCKETS {
            buckets.insert(facts, set.clone());
        }
        Bucket::Made(set)
    }

    #[cfg(test)]
    pub fn guards(&self) -> impl Iterator<Item = (&str, (bool, usize))> {
        self.guarded
            .iter()
            .map(|g| (g.policy.id().as_ref(), g.guard.summary()))
    }
}

enum Bucket<'a> {
    All(&'a PolicySet),
    Made(Arc<PolicySet>),
}

impl std::ops::Deref for Bucket<'_> {
    type Target = PolicySet;
    fn deref(&self) -> &PolicySet {
        match self {
            Bucket::All(s) => s,
            Bucket::Made(s) => s,
        }
    }
}

pub(crate) struct PolicyIndex {
    full: PolicySet,
    pub meta: HashMap<PolicyId, PolicyMeta>,
    actions: HashMap<String, ActionIndex>,
    authorizer: Authorizer,
}

fn action_matches(
    c: &ActionConstraint,
    action: &EntityUid,
    ancestors: &HashSet<EntityUid>,
) -> bool {
    match c {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == action,
        ActionConstraint::In(list) => list.iter().any(|a| a == action || ancestors.contains(a)),
    }
}

/// The entity a policy's scope pins the request to, if any.
fn specific_key(p: &Policy) -> Option<EntityUid> {
    match p.resource_constraint() {
        ResourceConstraint::Eq(u) | ResourceConstraint::In(u) | ResourceConstraint::IsIn(_, u) => {
            return Some(u);
        }
        ResourceConstraint::Any | ResourceConstraint::Is(_) => {}
    }
    match p.principal_constraint() {
        PrincipalConstraint::Eq(u) => Some(u),
        _ => None,
    }
}

fn principal_type_ok(p: &Policy, ty: &EntityTypeName) -> bool {
    match p.principal_constraint() {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
        PrincipalConstraint::Eq(u) => u.type_name() == ty,
        PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => &t == ty,
    }
}

fn resource_type_ok(p: &Policy, ty: &EntityTypeName) -> bool {
    match p.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(u) => u.type_name() == ty,
        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => &t == ty,
    }
}

/// `p` as the bucket of one action evaluates it: a scope `action in [...]` that the index has
/// already matched becomes `action`. Exact (the constraint is true for every request of that
/// bucket and cannot fail), and it spares Cedar making a set of the listed actions on every
/// evaluation, which was a third of a decision's instructions. Ids and annotations stay; any
/// problem keeps the policy as written.
fn specialise(p: &Policy, json: Option<&serde_json::Value>) -> Policy {
    if !matches!(p.action_constraint(), ActionConstraint::In(_)) {
        return p.clone();
    }
    let Some(mut json) = json.cloned() else {
        return p.clone();
    };
    match json.get_mut("action") {
        Some(action) => *action = serde_json::json!({ "op": "All" }),
        None => return p.clone(),
    }
    Policy::from_json(Some(p.id().clone()), json).unwrap_or_else(|_| p.clone())
}

/// A policy of the set as the buckets use it, made once however many buckets hold it: its
/// JSON form (what the guards read) and its specialised form.
struct Prepared {
    json: Option<serde_json::Value>,
    specialised: Policy,
}

fn set_of<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> PolicySet {
    let mut set = PolicySet::new();
    for p in policies {
        // Ids are unique in the source set, so adding cannot fail.
        let _ = set.add(p.clone());
    }
    set
}

impl PolicyIndex {
    pub fn build(full: PolicySet, meta: HashMap<PolicyId, PolicyMeta>, schema: &Schema) -> Self {
        let action_entities = schema.action_entities().ok();
        let mut actions = HashMap::new();
        let prepared: HashMap<PolicyId, Prepared> = full
            .policies()
            .map(|p| {
                let json = p.to_json().ok();
                let specialised = specialise(p, json.as_ref());
                (p.id().clone(), Prepared { json, specialised })
            })
            .collect();
        for action in schema.actions() {
            let ancestors: HashSet<EntityUid> = action_entities
                .as_ref()
                .and_then(|e| e.ancestors(action).map(|a| a.cloned().collect()))
                .unwrap_or_default();
            let mut generic: Vec<&Policy> = Vec::new();
            let mut specific: HashMap<EntityUid, Vec<&Policy>> = HashMap::new();
            let mut jsons: Vec<Option<&serde_json::Value>> = Vec::new();
            for p in full.policies() {
                if !action_matches(&p.action_constraint(), action, &ancestors) {
                    continue;
                }
                jsons.push(prepared.get(p.id()).and_then(|x| x.json.as_ref()));
                match specific_key(p) {
                    Some(key) => specific.entry(key).or_default().push(p),
                    None => generic.push(p),
                }
            }
            let principals: Vec<EntityTypeName> = schema
                .principals_for_action(action)
                .map(|i| i.cloned().collect())
                .unwrap_or_default();
            let resource_types: Vec<EntityTypeName> = schema
                .resources_for_action(action)
                .map(|i| i.cloned().collect())
                .unwrap_or_default();
            let mut by_types = Vec::new();
            for pt in &principals {
                for rt in &resource_types {
                    let set = Generic::new(
                        generic
                            .iter()
                            .copied()
                            .filter(|p| principal_type_ok(p, pt) && resource_type_ok(p, rt)),
                        &prepared,
                    );
                    by_types.push((pt.clone(), rt.clone(), set));
                }
            }
            let index = ActionIndex {
                clock: Clock::of(jsons),
                uid: action.clone(),
                resource_types,
                by_types,
                any_types: set_of(generic.iter().copied()),
                specific: specific
                    .into_iter()
                    .map(|(k, v)| {
                        let specialised = v
                            .into_iter()
                            .map(|p| prepared.get(p.id()).map_or(p, |x| &x.specialised));
                        (k, set_of(specialised))
                    })
                    .collect(),
            };
            actions.insert(action.id().unescaped().to_string(), index);
        }
        PolicyIndex {
            full,
            meta,
            actions,
            authorizer: Authorizer::new(),
        }
    }

    pub fn action(&self, name: &str) -> Option<&ActionIndex> {
        self.actions.get(name)
    }

    pub fn full(&self) -> &PolicySet {
        &self.full
    }

    /// The indexed answer.
    pub fn evaluate(
        &self,
        action: Option<&ActionIndex>,
        request: &Request,
        principal: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
        version: Arc<str>,
    ) -> Decision {
        let Some(action) = action else {
            return self.evaluate_full(request, entities, version);
        };
        let mut acc = Accumulator::default();
        let generic = match action
            .by_types
            .iter()
            .find(|(p, r, _)| p == principal.type_name() && r == resource.type_name())
        {
            Some((_, _, generic)) => generic.bucket(principal, entities),
            None => Bucket::All(&action.any_types),
        };
        acc.add(
            &self.authorizer.is_authorized(request, &generic, entities),
            &self.meta,
        );
        if !action.specific.is_empty() {
            let mut keys: Vec<&EntityUid> = vec![resource];
            if let Some(ancestors) = entities.ancestors(resource) {
                keys.extend(ancestors);
            }
            keys.push(principal);
            let mut done: Vec<&EntityUid> = Vec::with_capacity(keys.len());
            for key in keys {
                if done.contains(&key) {
                    continue;
                }
                done.push(key);
                if let Some(set) = action.specific.get(key) {
                    acc.add(
                        &self.authorizer.is_authorized(request, set, entities),
                        &self.meta,
                    );
                }
            }
        }
        acc.finish(&self.meta, version)
    }

    /// The reference answer: the whole set in one call.
    pub fn evaluate_full(
        &self,
        request: &Request,
        entities: &Entities,
        version: Arc<str>,
    ) -> Decision {
        let mut acc = Accumulator::default();
        acc.add(
            &self.authorizer.is_authorized(request, &self.full, entities),
            &self.meta,
        );
        acc.finish(&self.meta, version)
    }

    /// The ids of the generic policies a request evaluates (its bucket), sorted.
    #[cfg(test)]
    pub fn bucket_ids(
        &self,
        action: &str,
        principal: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
    ) -> Option<Vec<String>> {
        let (_, _, generic) = self
            .actions
            .get(action)?
            .by_types
            .iter()
            .find(|(p, r, _)| p == principal.type_name() && r == resource.type_name())?;
        let bucket = generic.bucket(principal, entities);
        let mut ids: Vec<String> = bucket.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        Some(ids)
    }

    /// How many buckets the generic sets of `action` have made and kept.
    #[cfg(test)]
    pub fn buckets_made(&self, action: &str) -> usize {
        self.actions.get(action).map_or(0, |a| {
            a.by_types
                .iter()
                .map(|(_, _, g)| g.buckets.read().map_or(0, |b| b.len()))
                .sum()
        })
    }

    /// The guards of the generic policies of `action` for these types: (id, (reads the
    /// principal scope, conjuncts read)).
    #[cfg(test)]
    pub fn guards(
        &self,
        action: &str,
        p: &EntityTypeName,
        r: &EntityTypeName,
    ) -> Vec<(String, (bool, usize))> {
        let Some(a) = self.actions.get(action) else {
            return Vec::new();
        };
        a.by_types
            .iter()
            .filter(|(pt, rt, _)| pt == p && rt == r)
            .flat_map(|(_, _, g)| g.guards().map(|(id, s)| (id.to_string(), s)))
            .collect()
    }

    /// Number of policies a request for `action` with these types evaluates at least.
    #[cfg(test)]
    pub fn generic_len(
        &self,
        action: &str,
        p: &EntityTypeName,
        r: &EntityTypeName,
    ) -> Option<usize> {
        let a = self.actions.get(action)?;
        a.by_types
            .iter()
            .find(|(pt, rt, _)| pt == p && rt == r)
            .map(|(_, _, s)| s.all.policies().count())
    }
}

#[cfg(test)]
#[expect(clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests;
