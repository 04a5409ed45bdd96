//! `taxgate import`: upserting a validated seed (see `seed.rs` for what a re-import changes).

use super::SqlStore;
use super::dialect::{Affected as _, BindArg as _, Cols as _, Dialect, Tx, on};
use super::grants::insert_binding;
use crate::decode;
use crate::error::StoreError;
use crate::ids::Phone;
use crate::model::{Binding, Secret, Timestamp};
use crate::records::Invalidation;
use crate::seed::{
    ImportSummary, SeedAgreement, SeedBinding, SeedEnterprise, SeedPerson, ValidSeed,
};
use crate::store_api::StoreResult;

pub(crate) async fn apply_seed<S: SqlStore>(
    st: &S,
    seed: &ValidSeed,
    now: Timestamp,
) -> StoreResult<ImportSummary> {
    let mut tx = st.begin_write().await?;
    let mut sum = ImportSummary::default();
    for p in &seed.persons {
        upsert_person(&mut tx, p, now, &mut sum).await?;
    }
    for e in &seed.enterprises {
        upsert_enterprise(&mut tx, e, now, &mut sum).await?;
    }
    for b in &seed.bindings {
        upsert_binding(&mut tx, b, now, &mut sum).await?;
    }
    for g in &seed.agreements {
        upsert_agreement(&mut tx, g, now, &mut sum).await?;
    }
    let inv = vec![Invalidation::All];
    st.commit_notifying(tx, inv).await?;
    Ok(sum)
}

async fn upsert_person<D: Dialect>(
    tx: &mut Tx<D>,
    p: &SeedPerson,
    now: Timestamp,
    sum: &mut ImportSummary,
) -> StoreResult<()> {
    // Free the number / username from another seeded person first (validation made sure any
    // current holder is in the seed and gets its own value below).
    let unique = [
        (
            "UPDATE persons SET phone = NULL, updated_at = $3 \
             WHERE phone = $1 AND id_number <> $2",
            p.phone.as_ref().map(Phone::as_str),
        ),
        (
            "UPDATE persons SET username = NULL, updated_at = $3 \
             WHERE username = $1 AND id_number <> $2",
            p.username.as_deref(),
        ),
    ];
    for (free, value) in unique {
        if let Some(value) = value {
            let q = sqlx::query(free)
                .arg(value)
                .arg(p.id_number.as_str())
                .arg(now);
            q.execute(on(tx)).await?;
        }
    }
    let exists = sqlx::query("SELECT 1 FROM persons WHERE id_number = $1")
        .arg(p.id_number.as_str())
        .fetch_optional(on(tx))
        .await?;
    if exists.is_some() {
        // The password is never touched: the person may have changed it.
        let n = sqlx::query(
            "UPDATE persons SET name = $2, username = $3, phone = $4, updated_at = $5 \
             WHERE id_number = $1 AND (name IS DISTINCT FROM $2 \
             OR username IS DISTINCT FROM $3 OR phone IS DISTINCT FROM $4)",
        )
        .arg(p.id_number.as_str())
        .arg(p.name.as_str())
        .arg(p.username.as_deref())
        .arg(p.phone.as_ref().map(Phone::as_str))
        .arg(now)
        .execute(on(tx))
        .await?
        .rows_affected();
        sum.persons_updated += n;
    } else {
        let Some(hash) = &p.password_hash else {
            return Err(StoreError::conflict(
                "a seeded person was deleted during the import; run it again",
            ));
        };
        sqlx::query(
            "INSERT INTO persons (id_number, name, username, phone, password_hash, \
             must_change_password, failed_logins, locked_until, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, $7, $7)",
        )
        .arg(p.id_number.as_str())
        .arg(p.name.as_str())
        .arg(p.username.as_deref())
        .arg(p.phone.as_ref().map(Phone::as_str))
        .arg(hash.expose())
        .arg(p.must_change_password)
        .arg(now)
        .execute(on(tx))
        .await?;
        sum.persons_created += 1;
    }
    Ok(())
}

async fn upsert_enterprise<D: Dialect>(
    tx: &mut Tx<D>,
    e: &SeedEnterprise,
    now: Timestamp,
    sum: &mut ImportSummary,
) -> StoreResult<()> {
    let exists = sqlx::query("SELECT 1 FROM enterprises WHERE taxpayer_id = $1")
        .arg(e.taxpayer_id.as_str())
        .fetch_optional(on(tx))
        .await?;
    if exists.is_some() {
        let n = sqlx::query(
            "UPDATE enterprises SET name = $2, is_agency = $3, phone = $4, \
             updated_at = $5 WHERE taxpayer_id = $1 AND (name IS DISTINCT FROM $2 \
             OR is_agency IS DISTINCT FROM $3 OR phone IS DISTINCT FROM $4)",
        )
        .arg(e.taxpayer_id.as_str())
        .arg(e.name.as_str())
        .arg(e.is_agency)
        .arg(e.phone.as_ref().map(Phone::as_str))
        .arg(now)
        .execute(on(tx))
        .await?
        .rows_affected();
        sum.enterprises_updated += n;
    } else {
        sqlx::query(
            "INSERT INTO enterprises (taxpayer_id, name, is_agency, \
             legacy_password_hash, phone, failed_logins, locked_until, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, 0, NULL, $6, $6)",
        )
        .arg(e.taxpayer_id.as_str())
        .arg(e.name.as_str())
        .arg(e.is_agency)
        .arg(e.legacy_password_hash.as_ref().map(Secret::expose))
        .arg(e.phone.as_ref().map(Phone::as_str))
        .arg(now)
        .execute(on(tx))
        .await?;
        sum.enterprises_created += 1;
    }
    Ok(())
}

async fn upsert_binding<D: Dialect>(
    tx: &mut Tx<D>,
    b: &SeedBinding,
    now: Timestamp,
    sum: &mut ImportSummary,
) -> StoreResult<()> {
    let existing = sqlx::query(
        "SELECT id FROM bindings WHERE person = $1 AND enterprise = $2 \
         AND role = $3 AND revoked_at IS NULL",
    )
    .arg(b.person.as_str())
    .arg(b.enterprise.as_str())
    .arg(b.role.as_str())
    .fetch_optional(on(tx))
    .await?;
    let perms = b.permissions.as_deref().map(decode::groups_json);
    match existing {
        Some(row) => {
            let id: String = row.only()?;
            // Confirmations only ever get added by an import, never withdrawn.
            let n = sqlx::query(
                "UPDATE bindings SET permissions = $2, \
                 valid_from = COALESCE($3, valid_from), valid_until = $4, \
                 enterprise_confirmed = (enterprise_confirmed OR $5), \
                 person_confirmed = (person_confirmed OR $6), \
                 updated_at = $7, updated_by = 'import' \
                 WHERE id = $1 AND (permissions IS DISTINCT FROM $2 \
                 OR valid_from IS DISTINCT FROM COALESCE($3, valid_from) \
                 OR valid_until IS DISTINCT FROM $4 \
                 OR enterprise_confirmed IS DISTINCT FROM (enterprise_confirmed OR $5) \
                 OR person_confirmed IS DISTINCT FROM (person_confirmed OR $6))",
            )
            .arg(id.as_str())
            .arg(perms)
            .arg(b.valid_from)
            .arg(b.valid_until)
            .arg(b.enterprise_confirmed)
            .arg(b.person_confirmed)
            .arg(now)
            .execute(on(tx))
            .await?
            .rows_affected();
            sum.bindings_updated += n;
        }
        None => {
            let binding = Binding {
                id: crate::records::new_id()?,
                person: b.person.clone(),
                enterprise: b.enterprise.clone(),
                role: b.role,
                permissions: b.permissions.clone(),
                valid_from: b.valid_from.unwrap_or(now),
                valid_until: b.valid_until,
                enterprise_confirmed: b.enterprise_confirmed,
                person_confirmed: b.person_confirmed,
                revoked_at: None,
                created_at: now,
                updated_at: now,
                updated_by: "import".to_string(),
            };
            insert_binding(on(tx), &binding, None).await?;
            sum.bindings_created += 1;
        }
    }
    Ok(())
}

async fn upsert_agreement<D: Dialect>(
    tx: &mut Tx<D>,
    g: &SeedAgreement,
    now: Timestamp,
    sum: &mut ImportSummary,
) -> StoreResult<()> {
    let existing = sqlx::query(
        "SELECT id FROM agency_agreements WHERE agency = $1 AND client = $2 \
         AND revoked_at IS NULL",
    )
    .arg(g.agency.as_str())
    .arg(g.client.as_str())
    .fetch_optional(on(tx))
    .await?;
    let scope = decode::groups_json(&g.scope);
    let (id, mut changed, created) = match existing {
        Some(row) => {
            let id: String = row.only()?;
            let n = sqlx::query(
                "UPDATE agency_agreements SET scope = $2, \
                 valid_from = COALESCE($3, valid_from), valid_until = $4, \
                 client_confirmed = (client_confirmed OR $5), updated_at = $6 \
                 WHERE id = $1 AND (scope IS DISTINCT FROM $2 \
                 OR valid_from IS DISTINCT FROM COALESCE($3, valid_from) \
                 OR valid_until IS DISTINCT FROM $4 \
                 OR client_confirmed IS DISTINCT FROM (client_confirmed OR $5))",
            )
            .arg(id.as_str())
            .arg(scope.as_str())
            .arg(g.valid_from)
            .arg(g.valid_until)
            .arg(g.client_confirmed)
            .arg(now)
            .execute(on(tx))
            .await?
            .rows_affected();
            (id, n > 0, false)
        }
        None => {
            let id = crate::records::new_id()?;
            sqlx::query(
                "INSERT INTO agency_agreements (id, agency, client, scope, \
                 valid_from, valid_until, client_confirmed, revoked_at, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8)",
            )
            .arg(id.as_str())
            .arg(g.agency.as_str())
            .arg(g.client.as_str())
            .arg(scope.as_str())
            .arg(g.valid_from.unwrap_or(now))
            .arg(g.valid_until)
            .arg(g.client_confirmed)
            .arg(now)
            .execute(on(tx))
            .await?;
            sum.agreements_created += 1;
            (id, false, true)
        }
    };
    let current: Vec<String> =
        sqlx::query("SELECT person FROM agreement_staff WHERE agreement_id = $1")
            .arg(id.as_str())
            .fetch_all(on(tx))
            .await?
            .iter()
            .map(|r| r.only())
            .collect::<Result<_, _>>()?;
    for gone in current
        .iter()
        .filter(|c| !g.staff.iter().any(|s| s.as_str() == c.as_str()))
    {
        sqlx::query("DELETE FROM agreement_staff WHERE agreement_id = $1 AND person = $2")
            .arg(id.as_str())
            .arg(gone.as_str())
            .execute(on(tx))
            .await?;
        changed = true;
    }
    for new in g
        .staff
        .iter()
        .filter(|s| !current.iter().any(|c| c == s.as_str()))
    {
        sqlx::query("INSERT INTO agreement_staff (agreement_id, person) VALUES ($1, $2)")
            .arg(id.as_str())
            .arg(new.as_str())
            .execute(on(tx))
            .await?;
        changed = true;
    }
    if changed && !created {
        sum.agreements_updated += 1;
    }
    Ok(())
}
