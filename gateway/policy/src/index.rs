//! The policy index: per action, the policies whose scope can match, split into a generic part
//! (per principal and resource type) and a specific part keyed by the entity a scope names
//! (`resource == E`, `resource in E`, `principal == P`).
//!
//! A request evaluates its generic set and the specific sets of its resource, the resource's
//! ancestors and its principal. Every policy whose scope can match the request is in one of
//! those sets, each policy is in at most one of them, and Cedar still checks every scope, so the
//! combined answer (see `decision`) equals the whole set's answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    by_types: Vec<(EntityTypeName, EntityTypeName, PolicySet)>,
    /// Generic policies of the action, whatever the types (for requests outside the schema).
    any_types: PolicySet,
    /// Policies whose scope names one entity, by that entity.
    specific: HashMap<EntityUid, PolicySet>,
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
        for action in schema.actions() {
            let ancestors: HashSet<EntityUid> = action_entities
                .as_ref()
                .and_then(|e| e.ancestors(action).map(|a| a.cloned().collect()))
                .unwrap_or_default();
            let mut generic: Vec<&Policy> = Vec::new();
            let mut specific: HashMap<EntityUid, Vec<&Policy>> = HashMap::new();
            for p in full.policies() {
                if !action_matches(&p.action_constraint(), action, &ancestors) {
                    continue;
                }
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
                    let set = set_of(
                        generic
                            .iter()
                            .copied()
                            .filter(|p| principal_type_ok(p, pt) && resource_type_ok(p, rt)),
                    );
                    by_types.push((pt.clone(), rt.clone(), set));
                }
            }
            let index = ActionIndex {
                uid: action.clone(),
                resource_types,
                by_types,
                any_types: set_of(generic.iter().copied()),
                specific: specific.into_iter().map(|(k, v)| (k, set_of(v))).collect(),
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
        let generic = action
            .by_types
            .iter()
            .find(|(p, r, _)| p == principal.type_name() && r == resource.type_name())
            .map(|(_, _, set)| set)
            .unwrap_or(&action.any_types);
        acc.add(
            &self.authorizer.is_authorized(request, generic, entities),
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
            .map(|(_, _, s)| s.policies().count())
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests fail loudly")]
mod tests;
