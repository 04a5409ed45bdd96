//! The checks across the rows of a seed file that read well: uniqueness inside the file, then
//! references and conflicts against the store.

use std::collections::{HashMap, HashSet};

use super::RowError;
use super::file::{Parsed, err};
use crate::error::StoreError;
use crate::ids::{IdNumber, TaxpayerId};
use crate::store_api::Store;

/// Uniqueness inside the file: one row per key, one holder per phone and username.
pub(super) fn check_duplicates(p: &Parsed, errs: &mut Vec<RowError>) {
    let mut ids = HashMap::new();
    let mut phones = HashMap::new();
    let mut usernames = HashMap::new();
    for (i, pp) in &p.persons {
        if let Some(first) = ids.insert(pp.p.id_number.clone(), *i) {
            err(
                errs,
                format!("persons[{i}].id_number"),
                format!("repeats persons[{first}]; merge the two rows"),
            );
        }
        if let Some(ph) = &pp.p.phone
            && let Some(first) = phones.insert(ph.clone(), *i)
        {
            err(
                errs,
                format!("persons[{i}].phone"),
                format!(
                    "is also the phone of persons[{first}]; one number belongs to one person \
                         (一号一人): keep it on one of them"
                ),
            );
        }
        if let Some(u) = &pp.p.username
            && let Some(first) = usernames.insert(u.clone(), *i)
        {
            err(
                errs,
                format!("persons[{i}].username"),
                format!("is also the username of persons[{first}]; choose another"),
            );
        }
    }
    let mut tids = HashMap::new();
    for (i, e) in &p.enterprises {
        if let Some(first) = tids.insert(e.e.taxpayer_id.clone(), *i) {
            err(
                errs,
                format!("enterprises[{i}].taxpayer_id"),
                format!("repeats enterprises[{first}]; merge the two rows"),
            );
        }
    }
    let mut keys = HashMap::new();
    for (i, b) in &p.bindings {
        if let Some(first) = keys.insert((b.person.clone(), b.enterprise.clone(), b.role), *i) {
            err(
                errs,
                format!("bindings[{i}]"),
                format!("repeats the person, enterprise and role of bindings[{first}]; merge them"),
            );
        }
    }
    let mut pairs = HashMap::new();
    for (i, a) in &p.agreements {
        if let Some(first) = pairs.insert((a.agency.clone(), a.client.clone()), *i) {
            err(
                errs,
                format!("agency_agreements[{i}]"),
                format!("repeats the agency and client of agency_agreements[{first}]; merge them"),
            );
        }
    }
}

/// Which seeded accounts already exist (their passwords are left alone).
#[derive(Debug, Default)]
pub(super) struct Existing {
    pub(super) persons: HashSet<IdNumber>,
    pub(super) enterprises: HashSet<TaxpayerId>,
}

pub(super) async fn check_against_store<S: Store>(
    store: &S,
    p: &Parsed,
    errs: &mut Vec<RowError>,
) -> Result<Existing, StoreError> {
    let mut existing = Existing::default();
    let seeded_persons: HashSet<&IdNumber> =
        p.persons.iter().map(|(_, x)| &x.p.id_number).collect();
    let seeded_agency: HashMap<&TaxpayerId, bool> = p
        .enterprises
        .iter()
        .map(|(_, x)| (&x.e.taxpayer_id, x.e.is_agency))
        .collect();

    for (i, pp) in &p.persons {
        if store.person(&pp.p.id_number).await?.is_some() {
            existing.persons.insert(pp.p.id_number.clone());
        }
        if let Some(ph) = &pp.p.phone
            && let Some(holder) = store.person_by_account(ph.as_str()).await?
            && holder.id_number != pp.p.id_number
            && !seeded_persons.contains(&holder.id_number)
        {
            err(
                errs,
                format!("persons[{i}].phone"),
                format!(
                    "is held by another person ({}) who is not in this seed; one number \
                             belongs to one person (一号一人): drop it here, or add that person to \
                             the seed with another number",
                    holder.id_number.masked()
                ),
            );
        }
        if let Some(u) = &pp.p.username
            && let Some(holder) = store.person_by_account(u).await?
            && holder.id_number != pp.p.id_number
            && !seeded_persons.contains(&holder.id_number)
        {
            err(
                errs,
                format!("persons[{i}].username"),
                "is taken by a person who is not in this seed; choose another",
            );
        }
    }
    let mut agency_in_store: HashMap<TaxpayerId, Option<bool>> = HashMap::new();
    for (_, e) in &p.enterprises {
        if store.enterprise(&e.e.taxpayer_id).await?.is_some() {
            existing.enterprises.insert(e.e.taxpayer_id.clone());
        }
    }
    // Is this enterprise known, and is it an agency? The seed's word wins (it is upserted).
    let mut enterprise_kind = async |tid: &TaxpayerId| -> Result<Option<bool>, StoreError> {
        if let Some(a) = seeded_agency.get(tid) {
            return Ok(Some(*a));
        }
        if let Some(k) = agency_in_store.get(tid) {
            return Ok(*k);
        }
        let k = store.enterprise(tid).await?.map(|e| e.is_agency);
        agency_in_store.insert(tid.clone(), k);
        Ok(k)
    };
    let mut person_in_store: HashMap<IdNumber, bool> = HashMap::new();
    let mut person_known = async |id: &IdNumber| -> Result<bool, StoreError> {
        if seeded_persons.contains(id) {
            return Ok(true);
        }
        if let Some(k) = person_in_store.get(id) {
            return Ok(*k);
        }
        let k = store.person(id).await?.is_some();
        person_in_store.insert(id.clone(), k);
        Ok(k)
    };

    for (i, b) in &p.bindings {
        if !person_known(&b.person).await? {
            err(
                errs,
                format!("bindings[{i}].person"),
                "no such person in the seed or the store; add the person to `persons` first",
            );
        }
        if enterprise_kind(&b.enterprise).await?.is_none() {
            err(
                errs,
                format!("bindings[{i}].enterprise"),
                "no such enterprise in the seed or the store; add it to `enterprises` first",
            );
        }
        // Separation of duties against agreements already stored (the seed's own agreements
        // are checked below, with the staff lists this import will leave).
        for agency in store.staff_agencies(&b.person, &b.enterprise).await? {
            let restated = p
                .agreements
                .iter()
                .any(|(_, a)| a.agency == agency && a.client == b.enterprise);
            if !restated {
                err(
                    errs,
                    format!("bindings[{i}].person"),
                    format!(
                        "is staff of the agency `{}`'s agreement with this enterprise; an agent \
                         may not hold a role in a client: drop this binding or take them off \
                         that agreement's `staff` first",
                        agency.as_str()
                    ),
                );
            }
        }
    }
    let seeded_links: HashSet<(&IdNumber, &TaxpayerId)> = p
        .bindings
        .iter()
        .map(|(_, b)| (&b.person, &b.enterprise))
        .collect();
    for (i, a) in &p.agreements {
        match enterprise_kind(&a.agency).await? {
            None => err(
                errs,
                format!("agency_agreements[{i}].agency"),
                "no such enterprise in the seed or the store; add it to `enterprises` first",
            ),
            Some(false) => err(
                errs,
                format!("agency_agreements[{i}].agency"),
                "is not an agency; set `\"agency\": true` on that enterprise or name the agency",
            ),
            Some(true) => {}
        }
        if enterprise_kind(&a.client).await?.is_none() {
            err(
                errs,
                format!("agency_agreements[{i}].client"),
                "no such enterprise in the seed or the store; add it to `enterprises` first",
            );
        }
        for (j, s) in a.staff.iter().enumerate() {
            let sp = format!("agency_agreements[{i}].staff[{j}]");
            if !person_known(s).await? {
                err(
                    errs,
                    sp,
                    "no such person in the seed or the store; add the person to `persons` first",
                );
                continue;
            }
            let bound_in_seed = seeded_links.contains(&(s, &a.client));
            let bound_in_store = !bound_in_seed
                && store
                    .bindings_between(s, &a.client)
                    .await?
                    .iter()
                    .any(|b| b.revoked_at.is_none());
            if bound_in_seed || bound_in_store {
                err(
                    errs,
                    sp,
                    "holds a role in the client enterprise; an agent may not act for a firm in \
                     which they hold a role: remove them from `staff` or end that binding first",
                );
            }
        }
    }
    // Staff paths index the sorted, deduplicated list; report them in file order where we can.
    Ok(existing)
}
