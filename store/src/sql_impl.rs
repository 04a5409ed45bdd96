//! The SQL both backends share. SQLite and PostgreSQL accept the same statements here
//! (`$n` placeholders, `RETURNING`, `ON CONFLICT`, partial indexes, `IS DISTINCT FROM`), so the
//! `Store` implementation is written once and expanded per backend with concrete sqlx types;
//! the differences (string aggregation, how a write transaction begins, notifications,
//! migrations) are parameters or methods of the backend type.

/// Split `items` into chunks of a few fixed sizes (256, 64, 16, 4, 1, largest first), so a
/// multi-row `INSERT` has one of five shapes and each is prepared once per connection and then
/// reused from the statement cache, instead of parsing a new statement for every batch size.
pub(crate) fn fixed_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = [256, 64, 16, 4, 1]
            .into_iter()
            .find(|&n| items.len() >= n)?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

macro_rules! sql_store_impl {
    ($Store:ty, $Db:ty, staff_agg = $agg:literal, migrations = $migrations:literal) => {
        use std::sync::LazyLock;

        use sqlx::{AssertSqlSafe, Row as _};
        use tokio::sync::broadcast;

        use crate::decode::{self, cols};
        use crate::error::StoreError;
        use crate::ids::{IdNumber, Phone, TaxpayerId};
        use crate::model::{
            AgencyAgreement, Binding, Enterprise, Person, Secret, Session, SessionSlice, Timestamp,
        };
        use crate::records::{
            AuditEvent, AuditPurge, AuditSlice, Challenge, ChallengePurpose, CheckOutcome,
            CheckReservation, ConfirmOutcome, FailureState, GuardKey, Invalidation, LockoutRule,
            NewBinding, PhoneAudit, PolicyUse, RecordedDecision, Side, SmsLimit, SmsRequest,
            SmsReservation, SmsStats,
        };
        use crate::seed::{ImportSummary, ValidSeed};
        use crate::store_api::{SessionIdentity, StoreResult};

        type DbRow = <$Db as sqlx::Database>::Row;

        fn col<'r, T>(row: &'r DbRow, prefix: &str, name: &str) -> StoreResult<T>
        where
            T: sqlx::Decode<'r, $Db> + sqlx::Type<$Db>,
        {
            let c = format!("{prefix}{name}");
            row.try_get::<T, &str>(c.as_str())
                .map_err(|e| StoreError::corrupt(&c, e))
        }

        fn agreement_cols() -> String {
            format!(
                "{}, (SELECT {}(st.person, ',') FROM agreement_staff st \
                 WHERE st.agreement_id = g.id) AS g_staff",
                cols("g", decode::AGREEMENT_COLS),
                $agg
            )
        }

        static SLICE_SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {}, {}, {}, {}, {}, {} FROM sessions s \
                 LEFT JOIN persons p ON p.id_number = s.person \
                 LEFT JOIN enterprises e ON e.taxpayer_id = s.enterprise \
                 LEFT JOIN enterprises a ON a.taxpayer_id = s.agency \
                 LEFT JOIN bindings b ON b.id = s.binding_id \
                 LEFT JOIN agency_agreements g ON g.id = s.agreement_id \
                 WHERE s.token_hash = $1",
                cols("s", decode::SESSION_COLS),
                cols("p", decode::PERSON_COLS),
                cols("e", decode::ENTERPRISE_COLS),
                cols("a", decode::ENTERPRISE_COLS),
                cols("b", decode::BINDING_COLS),
                agreement_cols(),
            )
        });
        static PERSON_SELECT: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {} FROM persons p", cols("p", decode::PERSON_COLS))
        });
        static ENTERPRISE_SELECT: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {} FROM enterprises e WHERE e.taxpayer_id = $1",
                cols("e", decode::ENTERPRISE_COLS)
            )
        });
        static BINDING_SELECT: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {} FROM bindings b", cols("b", decode::BINDING_COLS))
        });
        static AGREEMENT_SELECT: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {} FROM agency_agreements g", agreement_cols())
        });
        static CHALLENGE_SELECT: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {} FROM challenges c", cols("c", decode::CHALLENGE_COLS))
        });

        /// Checks under way after releasing `release` of them (a parameter: 0 or 1); a reservation
        /// whose time has passed counts as none.
        fn in_flight_after(release: &str) -> String {
            format!(
                "(CASE WHEN login_reserved_until > $2 AND login_in_flight > {release} \
                 THEN login_in_flight - {release} ELSE 0 END)"
            )
        }

        /// The SQL of one lockout table: `persons`, `enterprises` or `login_guards` (unknown
        /// account strings); the same columns in each.
        struct GuardSql {
            table: &'static str,
            key: &'static str,
            /// $1 key, $2 now, $3 max failures, $4 reservation seconds, $5 lockout seconds.
            reserve: String,
            /// $1 key.
            state: String,
            /// $1 key, $2 now, $3 max failures, $4 lockout seconds, $5 reservations released.
            fail: String,
            /// $1 key, $2 now, $3 reservations released.
            succeed: String,
            /// $1 key, $2 now, $3 reservations released.
            abandon: String,
        }

        fn guard_sql(table: &'static str, key: &'static str) -> GuardSql {
            let touch = if table == "login_guards" { ", updated_at = $2" } else { "" };
            let expired = "(locked_until IS NOT NULL AND locked_until <= $2)";
            // Failures count while they fall within `lockout` of the first of them, and an
            // expired lock starts afresh: either way the count is stale and restarts.
            let stale = |lockout: &str| {
                format!(
                    "({expired} OR (locked_until IS NULL AND failed_logins > 0 \
                     AND failures_since <= $2 - {lockout}))"
                )
            };
            let failures = format!("(CASE WHEN {} THEN 0 ELSE failed_logins END)", stale("$5"));
            let live = "(CASE WHEN login_reserved_until > $2 THEN login_in_flight ELSE 0 END)";
            // Every SET expression sees the old row. A failure after a stale count restarts it
            // at 1; reaching the maximum (re)locks.
            let next = format!("(CASE WHEN {} THEN 1 ELSE failed_logins + 1 END)", stale("$4"));
            let locked = "(locked_until IS NOT NULL AND locked_until > $2)";
            GuardSql {
                table,
                key,
                reserve: format!(
                    "UPDATE {table} SET failed_logins = {failures}, \
                     locked_until = CASE WHEN {expired} THEN NULL ELSE locked_until END, \
                     login_in_flight = {live} + 1, login_reserved_until = $2 + $4{touch} \
                     WHERE {key} = $1 AND NOT {locked} AND {failures} + {live} < $3 \
                     RETURNING failed_logins"
                ),
                state: format!("SELECT locked_until FROM {table} WHERE {key} = $1"),
                fail: format!(
                    "UPDATE {table} SET failed_logins = {next}, \
                     failures_since = CASE WHEN {} OR failed_logins = 0 THEN $2 \
                     ELSE failures_since END, \
                     locked_until = CASE WHEN {next} >= $3 THEN $2 + $4 \
                     WHEN {expired} THEN NULL ELSE locked_until END, \
                     login_in_flight = {}{touch} \
                     WHERE {key} = $1 RETURNING failed_logins, locked_until",
                    stale("$4"),
                    in_flight_after("$5")
                ),
                // A lock that came while the right password was being checked stands.
                succeed: format!(
                    "UPDATE {table} SET \
                     failed_logins = CASE WHEN {locked} THEN failed_logins ELSE 0 END, \
                     locked_until = CASE WHEN {locked} THEN locked_until ELSE NULL END, \
                     login_in_flight = {}{touch} \
                     WHERE {key} = $1 RETURNING failed_logins, locked_until",
                    in_flight_after("$3")
                ),
                abandon: format!(
                    "UPDATE {table} SET login_in_flight = {} \
                     WHERE {key} = $1 RETURNING failed_logins, locked_until",
                    in_flight_after("$3")
                ),
            }
        }
        static PERSON_GUARD: LazyLock<GuardSql> =
            LazyLock::new(|| guard_sql("persons", "id_number"));
        static ENTERPRISE_GUARD: LazyLock<GuardSql> =
            LazyLock::new(|| guard_sql("enterprises", "taxpayer_id"));
        static ACCOUNT_GUARD: LazyLock<GuardSql> =
            LazyLock::new(|| guard_sql("login_guards", "account"));

        fn guard_of(key: &GuardKey) -> (&'static GuardSql, &str) {
            match key {
                GuardKey::Person(id) => (&PERSON_GUARD, id.as_str()),
                GuardKey::Enterprise(t) => (&ENTERPRISE_GUARD, t.as_str()),
                GuardKey::Account(a) => (&ACCOUNT_GUARD, a.as_str()),
            }
        }

        /// Count a failure on `key` inside `tx`; a lock voids the open challenges it guards.
        async fn failure_in(
            tx: &mut Tx,
            key: &GuardKey,
            now: Timestamp,
            max_failures: i32,
            lockout_secs: i64,
            release: i32,
        ) -> StoreResult<FailureState> {
            let (sql, k) = guard_of(key);
            let row = sqlx::query(AssertSqlSafe(sql.fail.as_str()))
                .bind(k)
                .bind(now)
                .bind(max_failures)
                .bind(lockout_secs)
                .bind(release)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let state = FailureState {
                failed_count: col(&row, "", "failed_logins")?,
                locked_until: col(&row, "", "locked_until")?,
            };
            if state.locked_until.is_some_and(|t| t > now) {
                void_challenges_of(tx, key, now).await?;
            }
            Ok(state)
        }

        /// Void the open challenges a lock or a password change makes stale (issue 21 point 7).
        async fn void_challenges_of(tx: &mut Tx, key: &GuardKey, now: Timestamp) -> StoreResult<()> {
            let (sql, k) = match key {
                GuardKey::Person(id) => (
                    "UPDATE challenges SET consumed_at = $2 \
                     WHERE person = $1 AND consumed_at IS NULL",
                    id.as_str(),
                ),
                GuardKey::Enterprise(t) => (
                    "UPDATE challenges SET consumed_at = $2 WHERE enterprise = $1 \
                     AND entry = 'enterprise_legacy' AND consumed_at IS NULL",
                    t.as_str(),
                ),
                GuardKey::Account(_) => return Ok(()),
            };
            sqlx::query(sql).bind(k).bind(now).execute(&mut **tx).await?;
            Ok(())
        }

        /// One unit of a fixed-window budget, in one conditional upsert (see `take_budget`).
        async fn take_budget_in<'e, E>(
            exec: E,
            bucket: &str,
            window_start: Timestamp,
            limit: i64,
        ) -> StoreResult<Option<i64>>
        where
            E: sqlx::Executor<'e, Database = $Db>,
        {
            if limit <= 0 {
                return Ok(None);
            }
            let used: Option<i32> = sqlx::query_scalar(
                "INSERT INTO rate_budgets (bucket, window_start, used) VALUES ($1, $2, 1) \
                 ON CONFLICT (bucket) DO UPDATE SET \
                 used = CASE WHEN rate_budgets.window_start < excluded.window_start THEN 1 \
                 ELSE rate_budgets.used + 1 END, \
                 window_start = CASE WHEN rate_budgets.window_start < excluded.window_start \
                 THEN excluded.window_start ELSE rate_budgets.window_start END \
                 WHERE rate_budgets.window_start < excluded.window_start \
                 OR rate_budgets.used < $3 \
                 RETURNING used",
            )
            .bind(bucket)
            .bind(window_start)
            .bind(limit)
            .fetch_optional(exec)
            .await?;
            Ok(used.map(i64::from))
        }

        fn q(sql: &'static LazyLock<String>) -> AssertSqlSafe<&'static str> {
            AssertSqlSafe(sql.as_str())
        }

        fn session_at(row: &DbRow) -> StoreResult<Session> {
            let p = "s_";
            Ok(Session {
                id: col(row, p, "id")?,
                token_hash: col(row, p, "token_hash")?,
                entry: decode::entry("entry", &col::<String>(row, p, "entry")?)?,
                person: decode::opt("person", col(row, p, "person")?, decode::id_number)?,
                enterprise: decode::opt("enterprise", col(row, p, "enterprise")?, decode::taxpayer_id)?,
                agency: decode::opt("agency", col(row, p, "agency")?, decode::taxpayer_id)?,
                role: decode::opt("role", col(row, p, "role")?, decode::role)?,
                binding_id: col(row, p, "binding_id")?,
                agreement_id: col(row, p, "agreement_id")?,
                factor: decode::factor("factor", &col::<String>(row, p, "factor")?)?,
                created_at: col(row, p, "created_at")?,
                last_seen_at: col(row, p, "last_seen_at")?,
                expires_at: col(row, p, "expires_at")?,
                revoked_at: col(row, p, "revoked_at")?,
            })
        }

        fn person_at(row: &DbRow, p: &str) -> StoreResult<Option<Person>> {
            let Some(id) = col::<Option<String>>(row, p, "id_number")? else {
                return Ok(None);
            };
            Ok(Some(Person {
                id_number: decode::id_number("id_number", &id)?,
                name: col(row, p, "name")?,
                username: col(row, p, "username")?,
                phone: decode::opt("phone", col(row, p, "phone")?, decode::phone)?,
                password_hash: Secret(col(row, p, "password_hash")?),
                must_change_password: col(row, p, "must_change_password")?,
                failed_logins: col(row, p, "failed_logins")?,
                locked_until: col(row, p, "locked_until")?,
                updated_at: col(row, p, "updated_at")?,
            }))
        }

        fn enterprise_at(row: &DbRow, p: &str) -> StoreResult<Option<Enterprise>> {
            let Some(id) = col::<Option<String>>(row, p, "taxpayer_id")? else {
                return Ok(None);
            };
            Ok(Some(Enterprise {
                taxpayer_id: decode::taxpayer_id("taxpayer_id", &id)?,
                name: col(row, p, "name")?,
                is_agency: col(row, p, "is_agency")?,
                legacy_password_hash: col::<Option<String>>(row, p, "legacy_password_hash")?
                    .map(Secret),
                phone: decode::opt("phone", col(row, p, "phone")?, decode::phone)?,
                failed_logins: col(row, p, "failed_logins")?,
                locked_until: col(row, p, "locked_until")?,
            }))
        }

        fn binding_at(row: &DbRow) -> StoreResult<Option<Binding>> {
            let p = "b_";
            let Some(id) = col::<Option<String>>(row, p, "id")? else {
                return Ok(None);
            };
            Ok(Some(Binding {
                id,
                person: decode::id_number("person", &col::<String>(row, p, "person")?)?,
                enterprise: decode::taxpayer_id("enterprise", &col::<String>(row, p, "enterprise")?)?,
                role: decode::role("role", &col::<String>(row, p, "role")?)?,
                permissions: decode::opt("permissions", col(row, p, "permissions")?, decode::groups)?,
                valid_from: col(row, p, "valid_from")?,
                valid_until: col(row, p, "valid_until")?,
                enterprise_confirmed: col(row, p, "enterprise_confirmed")?,
                person_confirmed: col(row, p, "person_confirmed")?,
                revoked_at: col(row, p, "revoked_at")?,
                created_at: col(row, p, "created_at")?,
                updated_at: col(row, p, "updated_at")?,
                updated_by: col(row, p, "updated_by")?,
            }))
        }

        fn agreement_at(row: &DbRow) -> StoreResult<Option<AgencyAgreement>> {
            let p = "g_";
            let Some(id) = col::<Option<String>>(row, p, "id")? else {
                return Ok(None);
            };
            Ok(Some(AgencyAgreement {
                id,
                agency: decode::taxpayer_id("agency", &col::<String>(row, p, "agency")?)?,
                client: decode::taxpayer_id("client", &col::<String>(row, p, "client")?)?,
                staff: decode::staff("staff", col(row, p, "staff")?)?,
                scope: decode::groups("scope", &col::<String>(row, p, "scope")?)?,
                valid_from: col(row, p, "valid_from")?,
                valid_until: col(row, p, "valid_until")?,
                client_confirmed: col(row, p, "client_confirmed")?,
                revoked_at: col(row, p, "revoked_at")?,
                updated_at: col(row, p, "updated_at")?,
            }))
        }

        fn challenge_at(row: &DbRow) -> StoreResult<Challenge> {
            let p = "c_";
            Ok(Challenge {
                id_hash: col(row, p, "id_hash")?,
                purpose: decode::purpose("purpose", &col::<String>(row, p, "purpose")?)?,
                entry: decode::opt("entry", col(row, p, "entry")?, decode::entry)?,
                person: decode::opt("person", col(row, p, "person")?, decode::id_number)?,
                enterprise: decode::opt("enterprise", col(row, p, "enterprise")?, decode::taxpayer_id)?,
                agency: decode::opt("agency", col(row, p, "agency")?, decode::taxpayer_id)?,
                target_phone: decode::opt("target_phone", col(row, p, "target_phone")?, decode::phone)?,
                code_hash: col::<Option<String>>(row, p, "code_hash")?.map(Secret),
                code_expires_at: col(row, p, "code_expires_at")?,
                code_attempts: col(row, p, "code_attempts")?,
                face_nonce: col(row, p, "face_nonce")?,
                face_status: decode::opt("face_status", col(row, p, "face_status")?, decode::face_status)?,
                face_expires_at: col(row, p, "face_expires_at")?,
                client_addr: col(row, p, "client_addr")?,
                created_at: col(row, p, "created_at")?,
                expires_at: col(row, p, "expires_at")?,
                consumed_at: col(row, p, "consumed_at")?,
            })
        }

        fn recorded_decision_at(row: &DbRow) -> StoreResult<RecordedDecision> {
            let policies: String = col(row, "", "policies")?;
            let context: Option<String> = col(row, "", "context")?;
            let legacy_login_until = match context {
                Some(text) => {
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| StoreError::corrupt("context", e))?;
                    v.get("legacy_login_until").and_then(serde_json::Value::as_i64)
                }
                None => None,
            };
            Ok(RecordedDecision {
                id: col(row, "", "id")?,
                at: col(row, "", "at")?,
                entry: decode::opt("entry", col(row, "", "entry")?, decode::entry)?,
                role: decode::opt("role", col(row, "", "role")?, decode::role)?,
                action: col(row, "", "action")?,
                path: col(row, "", "path")?,
                allowed: col(row, "", "allowed")?,
                policies: serde_json::from_str(&policies)
                    .map_err(|e| StoreError::corrupt("policies", e))?,
                reason: col(row, "", "reason")?,
                policy_version: col(row, "", "policy_version")?,
                slice_hash: col(row, "", "slice_hash")?,
                legacy_login_until,
            })
        }

        fn all_bindings(rows: Vec<DbRow>) -> StoreResult<Vec<Binding>> {
            rows.iter().filter_map(|r| binding_at(r).transpose()).collect()
        }

        fn all_agreements(rows: Vec<DbRow>) -> StoreResult<Vec<AgencyAgreement>> {
            rows.iter().filter_map(|r| agreement_at(r).transpose()).collect()
        }

        type Tx = sqlx::Transaction<'static, $Db>;

        async fn binding_in(tx: &mut Tx, id: &str) -> StoreResult<Option<Binding>> {
            let sql = format!("{} WHERE b.id = $1", *BINDING_SELECT);
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(binding_at).transpose().map(Option::flatten)
        }

        impl crate::Store for $Store {
            async fn migrate(&self) -> StoreResult<()> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                // Usernames that differ only in case log in by their exact spelling only.
                let clashes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM username_clashes")
                    .fetch_one(&self.pool)
                    .await?;
                if clashes > 0 {
                    tracing::warn!(
                        clashes,
                        "usernames differ only in case (SELECT * FROM username_clashes): each \
                         logs in by its exact spelling only until one is renamed"
                    );
                }
                Ok(())
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn subscribe_invalidations(&self) -> broadcast::Receiver<Invalidation> {
                self.events.subscribe()
            }

            fn on_invalidation(&self, hook: crate::bus::InvalidationHook) {
                self.events.add_hook(hook)
            }

            async fn create_session(&self, s: &Session) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, token_hash, entry, person, enterprise, agency, \
                     role, binding_id, agreement_id, factor, created_at, last_seen_at, \
                     expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&s.id)
                .bind(&s.token_hash)
                .bind(s.entry.as_str())
                .bind(s.person.as_ref().map(IdNumber::as_str))
                .bind(s.enterprise.as_ref().map(TaxpayerId::as_str))
                .bind(s.agency.as_ref().map(TaxpayerId::as_str))
                .bind(s.role.map(|r| r.as_str()))
                .bind(s.binding_id.as_deref())
                .bind(s.agreement_id.as_deref())
                .bind(s.factor.as_str())
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(s.revoked_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session_slice(&self, token_hash: &str) -> StoreResult<Option<SessionSlice>> {
                let Some(row) = sqlx::query(q(&SLICE_SQL))
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                Ok(Some(SessionSlice {
                    session: session_at(&row)?,
                    person: person_at(&row, "p_")?,
                    enterprise: enterprise_at(&row, "e_")?,
                    agency: enterprise_at(&row, "a_")?,
                    binding: binding_at(&row)?,
                    agreement: agreement_at(&row)?,
                }))
            }

            async fn touch_session(&self, id: &str, now: Timestamp) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn revoke_session(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                let inv = vec![Invalidation::Session { id: id.to_string() }];
                if done {
                    self.notify(&mut tx, &inv).await?;
                }
                tx.commit().await?;
                if done {
                    self.publish(inv);
                }
                Ok(done)
            }

            async fn revoke_person_sessions(
                &self,
                person: &IdNumber,
                except: Option<&str>,
                now: Timestamp,
            ) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $2 \
                     WHERE person = $1 AND revoked_at IS NULL AND id <> COALESCE($3, '') \
                     RETURNING id",
                )
                .bind(person.as_str())
                .bind(now)
                .bind(except)
                .fetch_all(&mut *tx)
                .await?;
                let n = ids.len() as u64;
                let mut inv: Vec<Invalidation> =
                    ids.into_iter().map(|id| Invalidation::Session { id }).collect();
                inv.push(Invalidation::Person { id_number: person.clone() });
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(n)
            }

            async fn set_session_identity(
                &self,
                id: &str,
                ident: &SessionIdentity,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE sessions SET enterprise = $2, agency = $3, role = $4, \
                     binding_id = $5, agreement_id = $6 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(ident.enterprise.as_ref().map(TaxpayerId::as_str))
                .bind(ident.agency.as_ref().map(TaxpayerId::as_str))
                .bind(ident.role.map(|r| r.as_str()))
                .bind(ident.binding_id.as_deref())
                .bind(ident.agreement_id.as_deref())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                let inv = vec![Invalidation::Session { id: id.to_string() }];
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(())
            }

            async fn delete_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn person_by_account(&self, account: &str) -> StoreResult<Option<Person>> {
                let (column, key) = if let Ok(id) = IdNumber::parse(account) {
                    ("id_number", id.as_str().to_string())
                } else if let Ok(phone) = Phone::parse(account) {
                    ("phone", phone.as_str().to_string())
                } else {
                    let username = account.trim();
                    // Case-insensitive; where usernames clash in case only (see the view
                    // `username_clashes`), only the exact spelling matches, never a guess.
                    let sql = format!(
                        "{} WHERE lower(p.username) = lower($1) \
                         ORDER BY CASE WHEN p.username = $1 THEN 0 ELSE 1 END LIMIT 2",
                        *PERSON_SELECT
                    );
                    let rows = sqlx::query(AssertSqlSafe(sql))
                        .bind(username)
                        .fetch_all(&self.pool)
                        .await?;
                    let mut found = Vec::with_capacity(rows.len());
                    for r in &rows {
                        if let Some(p) = person_at(r, "p_")? {
                            found.push(p);
                        }
                    }
                    let exact = found
                        .first()
                        .is_some_and(|p| p.username.as_deref() == Some(username));
                    return Ok(if exact || found.len() == 1 {
                        found.into_iter().next()
                    } else {
                        None
                    });
                };
                let sql = format!("{} WHERE p.{column} = $1", *PERSON_SELECT);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|r| person_at(r, "p_")).transpose().map(Option::flatten)
            }

            async fn person(&self, id: &IdNumber) -> StoreResult<Option<Person>> {
                let sql = format!("{} WHERE p.id_number = $1", *PERSON_SELECT);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|r| person_at(r, "p_")).transpose().map(Option::flatten)
            }

            async fn record_person_failure(
                &self,
                id: &IdNumber,
                now: Timestamp,
                max_failures: i32,
                lockout_secs: i64,
            ) -> StoreResult<FailureState> {
                let mut tx = self.begin_write().await?;
                let key = GuardKey::Person(id.clone());
                let state = failure_in(&mut tx, &key, now, max_failures, lockout_secs, 0).await?;
                tx.commit().await?;
                Ok(state)
            }

            async fn reset_person_failures(&self, id: &IdNumber) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE persons SET failed_logins = 0, locked_until = NULL \
                     WHERE id_number = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)",
                )
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn set_password(
                &self,
                id: &IdNumber,
                phc: &Secret,
                must_change: bool,
                now: Timestamp,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE persons SET password_hash = $2, must_change_password = $3, \
                     updated_at = $4 WHERE id_number = $1",
                )
                .bind(id.as_str())
                .bind(phc.expose())
                .bind(must_change)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                void_challenges_of(&mut tx, &GuardKey::Person(id.clone()), now).await?;
                let inv = vec![Invalidation::Person { id_number: id.clone() }];
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(())
            }

            async fn transfer_phone(
                &self,
                id: &IdNumber,
                phone: &Phone,
                now: Timestamp,
                audit: &PhoneAudit,
            ) -> StoreResult<Option<IdNumber>> {
                // A concurrent transfer of the same number can make our final UPDATE hit the
                // unique index (PostgreSQL, read committed); running again then clears the
                // winner, so the last transfer wins and there is always exactly one holder.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self.transfer_phone_once(id, phone, now, audit).await {
                        Err(StoreError::Conflict { .. }) if attempt < 5 => continue,
                        other => return other,
                    }
                }
            }

            async fn enterprise(&self, id: &TaxpayerId) -> StoreResult<Option<Enterprise>> {
                let row = sqlx::query(q(&ENTERPRISE_SELECT))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|r| enterprise_at(r, "e_")).transpose().map(Option::flatten)
            }

            async fn record_enterprise_failure(
                &self,
                id: &TaxpayerId,
                now: Timestamp,
                max_failures: i32,
                lockout_secs: i64,
            ) -> StoreResult<FailureState> {
                let mut tx = self.begin_write().await?;
                let key = GuardKey::Enterprise(id.clone());
                let state = failure_in(&mut tx, &key, now, max_failures, lockout_secs, 0).await?;
                tx.commit().await?;
                Ok(state)
            }

            async fn reset_enterprise_failures(&self, id: &TaxpayerId) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE enterprises SET failed_logins = 0, locked_until = NULL \
                     WHERE taxpayer_id = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)",
                )
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn binding(&self, id: &str) -> StoreResult<Option<Binding>> {
                let sql = format!("{} WHERE b.id = $1", *BINDING_SELECT);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(binding_at).transpose().map(Option::flatten)
            }

            async fn bindings_of_person(&self, person: &IdNumber) -> StoreResult<Vec<Binding>> {
                let sql = format!(
                    "{} WHERE b.person = $1 ORDER BY b.created_at DESC, b.id",
                    *BINDING_SELECT
                );
                all_bindings(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(person.as_str())
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn bindings_of_enterprise(
                &self,
                enterprise: &TaxpayerId,
            ) -> StoreResult<Vec<Binding>> {
                let sql = format!(
                    "{} WHERE b.enterprise = $1 ORDER BY b.created_at DESC, b.id",
                    *BINDING_SELECT
                );
                all_bindings(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(enterprise.as_str())
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn bindings_between(
                &self,
                person: &IdNumber,
                enterprise: &TaxpayerId,
            ) -> StoreResult<Vec<Binding>> {
                let sql = format!(
                    "{} WHERE b.person = $1 AND b.enterprise = $2 \
                     ORDER BY b.created_at DESC, b.id",
                    *BINDING_SELECT
                );
                all_bindings(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(person.as_str())
                        .bind(enterprise.as_str())
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn create_binding(&self, new: NewBinding) -> StoreResult<Binding> {
                let binding = Binding {
                    id: crate::records::new_id()?,
                    person: new.person,
                    enterprise: new.enterprise,
                    role: new.role,
                    permissions: new.permissions,
                    valid_from: new.valid_from,
                    valid_until: new.valid_until,
                    enterprise_confirmed: new.enterprise_confirmed,
                    person_confirmed: new.person_confirmed,
                    revoked_at: None,
                    created_at: new.now,
                    updated_at: new.now,
                    updated_by: new.by,
                };
                insert_binding(&self.pool, &binding, new.granted_by.as_deref())
                    .await
                    .map_err(|e| match e {
                    StoreError::Conflict { .. } => StoreError::conflict(
                        "an active binding with this person, enterprise and role exists",
                    ),
                    other => other,
                })?;
                Ok(binding)
            }

            async fn confirm_binding(
                &self,
                id: &str,
                side: Side,
                by: &str,
                now: Timestamp,
            ) -> StoreResult<ConfirmOutcome> {
                let sql = match side {
                    Side::Enterprise => {
                        "UPDATE bindings SET enterprise_confirmed = TRUE, updated_at = $2, \
                         updated_by = $3 WHERE id = $1 AND revoked_at IS NULL \
                         AND enterprise_confirmed = FALSE"
                    }
                    // A pending grant is confirmed only while the binding that made it is live
                    // (not revoked, within its validity): it dies with its granter.
                    Side::Person => {
                        "UPDATE bindings SET person_confirmed = TRUE, updated_at = $2, \
                         updated_by = $3 WHERE id = $1 AND revoked_at IS NULL \
                         AND person_confirmed = FALSE \
                         AND (granted_by IS NULL OR EXISTS (SELECT 1 FROM bindings g \
                              WHERE g.id = bindings.granted_by AND g.revoked_at IS NULL \
                              AND g.valid_from <= $2 \
                              AND (g.valid_until IS NULL OR g.valid_until > $2)))"
                    }
                };
                let mut tx = self.begin_write().await?;
                let changed = sqlx::query(sql)
                    .bind(id)
                    .bind(now)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                let binding = binding_in(&mut tx, id).await?;
                let Some(binding) = binding.filter(|b| b.revoked_at.is_none()) else {
                    return Err(StoreError::NotFound);
                };
                if !changed && side == Side::Person && !binding.person_confirmed {
                    // Not confirmed, not revoked, yet not updated: its granter's binding is no
                    // longer live. The grant dies now (as revoking the granter would have
                    // done), and the answer is the same as for a revoked grant.
                    let mut dead = vec![id.to_string()];
                    sqlx::query(
                        "UPDATE bindings SET revoked_at = $2, updated_at = $2 \
                         WHERE id = $1 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    dead.extend(revoke_pending_grants_of(&mut tx, id, now).await?);
                    let inv: Vec<Invalidation> =
                        dead.into_iter().map(|id| Invalidation::Binding { id }).collect();
                    self.notify(&mut tx, &inv).await?;
                    tx.commit().await?;
                    self.publish(inv);
                    return Err(StoreError::NotFound);
                }
                if !changed {
                    return Ok(ConfirmOutcome::AlreadyConfirmed(binding));
                }
                let inv = vec![Invalidation::Binding { id: id.to_string() }];
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(ConfirmOutcome::Confirmed(binding))
            }

            async fn revoke_binding(
                &self,
                id: &str,
                by: &str,
                now: Timestamp,
            ) -> StoreResult<Binding> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE bindings SET revoked_at = $2, updated_at = $2, updated_by = $3 \
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .bind(by)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                let binding = binding_in(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
                let mut inv = vec![Invalidation::Binding { id: id.to_string() }];
                inv.extend(
                    revoke_pending_grants_of(&mut tx, id, now)
                        .await?
                        .into_iter()
                        .map(|id| Invalidation::Binding { id }),
                );
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(binding)
            }

            async fn agreement(&self, id: &str) -> StoreResult<Option<AgencyAgreement>> {
                let sql = format!("{} WHERE g.id = $1", *AGREEMENT_SELECT);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(agreement_at).transpose().map(Option::flatten)
            }

            async fn agreements_of_staff(
                &self,
                agency: &TaxpayerId,
                person: &IdNumber,
            ) -> StoreResult<Vec<AgencyAgreement>> {
                let sql = format!(
                    "{} JOIN agreement_staff me ON me.agreement_id = g.id \
                     WHERE me.person = $2 AND g.agency = $1 AND g.revoked_at IS NULL \
                     ORDER BY g.client",
                    *AGREEMENT_SELECT
                );
                all_agreements(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(agency.as_str())
                        .bind(person.as_str())
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn agreement_between(
                &self,
                agency: &TaxpayerId,
                client: &TaxpayerId,
            ) -> StoreResult<Option<AgencyAgreement>> {
                let sql = format!(
                    "{} WHERE g.agency = $1 AND g.client = $2 AND g.revoked_at IS NULL",
                    *AGREEMENT_SELECT
                );
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(agency.as_str())
                    .bind(client.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(agreement_at).transpose().map(Option::flatten)
            }

            async fn staff_agencies(
                &self,
                person: &IdNumber,
                client: &TaxpayerId,
            ) -> StoreResult<Vec<TaxpayerId>> {
                let rows = sqlx::query(
                    "SELECT g.agency AS agency FROM agency_agreements g \
                     JOIN agreement_staff st ON st.agreement_id = g.id \
                     WHERE g.client = $1 AND st.person = $2 AND g.revoked_at IS NULL \
                     ORDER BY g.agency",
                )
                .bind(client.as_str())
                .bind(person.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let agency: String =
                            r.try_get("agency").map_err(|e| StoreError::corrupt("agency", e))?;
                        decode::taxpayer_id("agency", &agency)
                    })
                    .collect()
            }

            async fn revoke_agreement(&self, id: &str, now: Timestamp) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE agency_agreements SET revoked_at = $2, updated_at = $2 \
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                let inv = vec![Invalidation::Agreement { id: id.to_string() }];
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(())
            }

            async fn create_challenge(&self, c: &Challenge) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO challenges (id_hash, purpose, entry, person, enterprise, agency, \
                     target_phone, code_hash, code_expires_at, code_attempts, face_nonce, \
                     face_status, client_addr, created_at, expires_at, consumed_at, \
                     face_expires_at) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(&c.id_hash)
                .bind(c.purpose.as_str())
                .bind(c.entry.map(|e| e.as_str()))
                .bind(c.person.as_ref().map(IdNumber::as_str))
                .bind(c.enterprise.as_ref().map(TaxpayerId::as_str))
                .bind(c.agency.as_ref().map(TaxpayerId::as_str))
                .bind(c.target_phone.as_ref().map(Phone::as_str))
                .bind(c.code_hash.as_ref().map(Secret::expose))
                .bind(c.code_expires_at)
                .bind(c.code_attempts)
                .bind(c.face_nonce.as_deref())
                .bind(c.face_status.map(|s| s.as_str()))
                .bind(c.client_addr.as_deref())
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.consumed_at)
                .bind(c.face_expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn challenge(&self, id_hash: &str) -> StoreResult<Option<Challenge>> {
                let sql = format!("{} WHERE c.id_hash = $1", *CHALLENGE_SELECT);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(id_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(challenge_at).transpose()
            }

            async fn record_code_attempt(&self, id_hash: &str) -> StoreResult<i32> {
                sqlx::query_scalar(
                    "UPDATE challenges SET code_attempts = code_attempts + 1 \
                     WHERE id_hash = $1 RETURNING code_attempts",
                )
                .bind(id_hash)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound)
            }

            async fn reserve_code_attempt(
                &self,
                id_hash: &str,
                now: Timestamp,
                max_attempts: i32,
            ) -> StoreResult<Option<i32>> {
                Ok(sqlx::query_scalar(
                    "UPDATE challenges SET code_attempts = code_attempts + 1 \
                     WHERE id_hash = $1 AND code_attempts < $2 AND consumed_at IS NULL \
                     AND expires_at > $3 RETURNING code_attempts",
                )
                .bind(id_hash)
                .bind(max_attempts)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn set_challenge_code(
                &self,
                id_hash: &str,
                code_hash: &Secret,
                code_expires_at: Timestamp,
            ) -> StoreResult<()> {
                let n = sqlx::query(
                    "UPDATE challenges SET code_hash = $2, code_expires_at = $3 WHERE id_hash = $1",
                )
                .bind(id_hash)
                .bind(code_hash.expose())
                .bind(code_expires_at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn set_face_nonce(&self, id_hash: &str, nonce: &str, expires_at: Timestamp) -> StoreResult<()> {
                let n = sqlx::query(
                    "UPDATE challenges SET face_nonce = $2, face_status = 'pending', \
                     face_expires_at = $3 WHERE id_hash = $1 \
                     AND (face_status IS NULL OR face_status <> 'failed')",
                )
                .bind(id_hash)
                .bind(nonce)
                .bind(expires_at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn challenge_by_nonce(&self, nonce: &str) -> StoreResult<Option<Challenge>> {
                let sql = format!("{} WHERE c.face_nonce = $1", *CHALLENGE_SELECT);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(nonce)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(challenge_at).transpose()
            }

            async fn set_face_result(&self, nonce: &str, passed: bool) -> StoreResult<bool> {
                let status = if passed { "passed" } else { "failed" };
                Ok(sqlx::query(
                    "UPDATE challenges SET face_status = $2 WHERE face_nonce = $1 \
                     AND face_status = 'pending' AND consumed_at IS NULL",
                )
                .bind(nonce)
                .bind(status)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1)
            }

            async fn consume_challenge(&self, id_hash: &str, now: Timestamp) -> StoreResult<bool> {
                Ok(sqlx::query(
                    "UPDATE challenges SET consumed_at = $2 WHERE id_hash = $1 \
                     AND consumed_at IS NULL AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1)
            }

            async fn delete_expired_challenges(&self, before: Timestamp) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM challenges WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn prune_sms_log(&self, before: Timestamp) -> StoreResult<u64> {
                sqlx::query("DELETE FROM rate_budgets WHERE window_start < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(
                    "DELETE FROM login_guards WHERE updated_at < $1 \
                     AND (locked_until IS NULL OR locked_until < $1)",
                )
                .bind(before)
                .execute(&self.pool)
                .await?;
                Ok(sqlx::query("DELETE FROM sms_log WHERE sent_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn reserve_sms(&self, r: &SmsRequest<'_>) -> StoreResult<SmsReservation> {
                let now = r.now;
                let l = &r.limits;
                let mut tx = self.begin_write().await?;
                // Sends to one number run one after the other (SQLite: BEGIN IMMEDIATE;
                // PostgreSQL: an advisory lock on the number), so the count read next is the
                // count the insert below extends.
                self.lock_key(&mut tx, &format!("sms:{}", r.phone.as_str())).await?;
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM sms_log WHERE phone = $1 AND sent_at >= $2) \
                     AS n, (SELECT MAX(sent_at) FROM sms_log WHERE phone = $1) AS last",
                )
                .bind(r.phone.as_str())
                .bind(l.day_start)
                .fetch_one(&mut *tx)
                .await?;
                let count: i64 = col(&row, "", "n")?;
                let last: Option<Timestamp> = col(&row, "", "last")?;
                let refuse = |limit, retry: i64| {
                    Ok(SmsReservation::Refused { limit, retry_after_secs: retry.max(1) })
                };
                // A request that read its clock before a racing one committed may see a later
                // `last` than its `now`: that is no time since, not negative time.
                if let Some(last) = last
                    && l.resend_secs > 0
                    && (now - last).max(0) < l.resend_secs
                {
                    let since = (now - last).max(0);
                    return refuse(SmsLimit::ResendInterval, l.resend_secs - since);
                }
                let next_day = l.day_start + 86_400 - now;
                if count >= l.number_daily {
                    return refuse(SmsLimit::NumberDaily, next_day);
                }
                // The budgets are taken in one fixed order (global, person, address), each row
                // locked until commit; a refusal rolls back what was taken before it.
                let minute = now.div_euclid(60) * 60;
                if take_budget_in(&mut *tx, "sms_global", minute, l.global_per_minute)
                    .await?
                    .is_none()
                {
                    return refuse(SmsLimit::GlobalPerMinute, minute + 60 - now);
                }
                if let Some(person) = r.person {
                    let bucket = format!("sms_person:{}", person.as_str());
                    if take_budget_in(&mut *tx, &bucket, l.day_start, l.person_daily)
                        .await?
                        .is_none()
                    {
                        return refuse(SmsLimit::PersonDaily, next_day);
                    }
                }
                if let Some(addr) = r.address {
                    let hour = now.div_euclid(3_600) * 3_600;
                    let bucket = format!("sms_addr:{addr}");
                    if take_budget_in(&mut *tx, &bucket, hour, l.address_hourly)
                        .await?
                        .is_none()
                    {
                        return refuse(SmsLimit::AddressHourly, hour + 3_600 - now);
                    }
                }
                sqlx::query(
                    "INSERT INTO sms_log (phone, purpose, sent_at, person, client_addr) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(r.phone.as_str())
                .bind(r.purpose.as_str())
                .bind(now)
                .bind(r.person.map(IdNumber::as_str))
                .bind(r.address)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(SmsReservation::Granted)
            }

            async fn reserve_password_check(
                &self,
                key: &GuardKey,
                now: Timestamp,
                rule: &LockoutRule,
            ) -> StoreResult<CheckReservation> {
                let (sql, k) = guard_of(key);
                // The same statements for a known account and for an unknown string that was
                // tried before (one UPDATE, and one SELECT when refused), so neither the
                // answer nor its time tells them apart; only an unknown string's first try
                // creates its row.
                let reserve = async || -> StoreResult<bool> {
                    let admitted: Option<i32> =
                        sqlx::query_scalar(AssertSqlSafe(sql.reserve.as_str()))
                            .bind(k)
                            .bind(now)
                            .bind(rule.max_failures)
                            .bind(rule.reservation_secs)
                            .bind(rule.lockout_secs)
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(admitted.is_some())
                };
                let state = async || -> StoreResult<Option<Option<Timestamp>>> {
                    Ok(sqlx::query_scalar(AssertSqlSafe(sql.state.as_str()))
                        .bind(k)
                        .fetch_optional(&self.pool)
                        .await?)
                };
                if reserve().await? {
                    return Ok(CheckReservation::Admitted);
                }
                // Refused: read the lock, to tell the client how long it lasts. Not locked, the
                // refusal may have come before a racing first try created the row (or before
                // checks under way settled): try once more, on every kind of key alike.
                let mut locked_until = state().await?;
                if locked_until.is_none() && matches!(key, GuardKey::Account(_)) {
                    sqlx::query(
                        "INSERT INTO login_guards (account, updated_at) VALUES ($1, $2) \
                         ON CONFLICT (account) DO NOTHING",
                    )
                    .bind(k)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    locked_until = Some(None);
                }
                if matches!(locked_until, Some(None)) {
                    if reserve().await? {
                        return Ok(CheckReservation::Admitted);
                    }
                    locked_until = state().await?;
                }
                let Some(locked_until) = locked_until else {
                    tracing::debug!(table = sql.table, column = sql.key, "no row to reserve on");
                    return Err(StoreError::NotFound);
                };
                Ok(CheckReservation::Refused {
                    locked_until: locked_until.filter(|t| *t > now),
                })
            }

            async fn settle_password_check(
                &self,
                key: &GuardKey,
                outcome: CheckOutcome,
                now: Timestamp,
                rule: &LockoutRule,
            ) -> StoreResult<FailureState> {
                let (sql, k) = guard_of(key);
                let mut tx = self.begin_write().await?;
                let state = match outcome {
                    CheckOutcome::Failed => {
                        failure_in(&mut tx, key, now, rule.max_failures, rule.lockout_secs, 1)
                            .await?
                    }
                    CheckOutcome::Succeeded | CheckOutcome::Abandoned => {
                        let text = if outcome == CheckOutcome::Succeeded {
                            sql.succeed.as_str()
                        } else {
                            sql.abandon.as_str()
                        };
                        let row = sqlx::query(AssertSqlSafe(text))
                            .bind(k)
                            .bind(now)
                            .bind(1_i32)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                        FailureState {
                            failed_count: col(&row, "", "failed_logins")?,
                            locked_until: col(&row, "", "locked_until")?,
                        }
                    }
                };
                tx.commit().await?;
                Ok(state)
            }

            async fn take_budget(
                &self,
                bucket: &str,
                window_start: Timestamp,
                limit: i64,
            ) -> StoreResult<Option<i64>> {
                take_budget_in(&self.pool, bucket, window_start, limit).await
            }

            async fn give_back_budget(&self, bucket: &str, window_start: Timestamp) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE rate_budgets SET used = used - 1 \
                     WHERE bucket = $1 AND window_start = $2 AND used > 0",
                )
                .bind(bucket)
                .bind(window_start)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_sms_sent(
                &self,
                phone: &Phone,
                purpose: ChallengePurpose,
                now: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query("INSERT INTO sms_log (phone, purpose, sent_at) VALUES ($1, $2, $3)")
                    .bind(phone.as_str())
                    .bind(purpose.as_str())
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn sms_stats(&self, phone: &Phone, since: Timestamp) -> StoreResult<SmsStats> {
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM sms_log WHERE phone = $1 AND sent_at >= $2) \
                     AS n, (SELECT MAX(sent_at) FROM sms_log WHERE phone = $1) AS last",
                )
                .bind(phone.as_str())
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
                Ok(SmsStats {
                    count: col(&row, "", "n")?,
                    last_sent_at: col(&row, "", "last")?,
                })
            }

            async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
                self.append_audit_with_slices(&[], events).await
            }

            async fn append_recovered_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                Self::insert_audit_events_as(&mut tx, events, true).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn append_audit_with_slices(
                &self,
                slices: &[(AuditSlice, Timestamp)],
                events: &[AuditEvent],
            ) -> StoreResult<()> {
                if events.is_empty() && slices.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                // A slice already stored (by this or another instance) keeps its content (the
                // hash covers it, so both are the same) and only its last use moves up. One
                // row per hash (PostgreSQL refuses to update a row twice in one statement), in
                // hash order, so writers on several instances lock shared rows in the same
                // order and cannot deadlock.
                let mut slices: Vec<&(AuditSlice, Timestamp)> = slices.iter().collect();
                slices.sort_by(|a, b| a.0.hash.cmp(&b.0.hash).then(b.1.cmp(&a.1)));
                slices.dedup_by(|later, first| later.0.hash == first.0.hash);
                for chunk in crate::sql_impl::fixed_chunks(&slices) {
                    let mut qb = sqlx::QueryBuilder::<$Db>::new(
                        "INSERT INTO audit_slices (hash, slice, first_seen, last_seen) ",
                    );
                    qb.push_values(chunk.iter().copied(), |mut b, (s, seen)| {
                        b.push_bind(s.hash.to_string())
                            .push_bind(s.json.to_string())
                            .push_bind(*seen)
                            .push_bind(*seen);
                    });
                    qb.push(
                        " ON CONFLICT (hash) DO UPDATE SET last_seen = excluded.last_seen \
                         WHERE audit_slices.last_seen < excluded.last_seen",
                    );
                    qb.build().execute(&mut *tx).await?;
                }
                Self::insert_audit_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn recorded_decisions(
                &self,
                since: Timestamp,
                limit: i64,
            ) -> StoreResult<Vec<RecordedDecision>> {
                let rows = sqlx::query(
                    "SELECT id, at, entry, role, action, path, allowed, policies, reason, \
                     policy_version, slice_hash, context FROM audit_events \
                     WHERE request_id IS NOT NULL AND at >= $1 \
                     ORDER BY at DESC, id DESC LIMIT $2",
                )
                .bind(since)
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(recorded_decision_at).collect()
            }

            async fn audit_slices(&self, hashes: &[String]) -> StoreResult<Vec<(String, String)>> {
                let mut out = Vec::with_capacity(hashes.len());
                for chunk in hashes.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$Db>::new(
                        "SELECT hash, slice FROM audit_slices WHERE hash IN (",
                    );
                    let mut list = qb.separated(", ");
                    for h in chunk {
                        list.push_bind(h.clone());
                    }
                    qb.push(")");
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    for row in &rows {
                        out.push((col(row, "", "hash")?, col(row, "", "slice")?));
                    }
                }
                Ok(out)
            }

            async fn policy_use(&self, since: Timestamp) -> StoreResult<Vec<PolicyUse>> {
                // Few distinct combinations of determining policies exist, so grouping in SQL
                // keeps this one small result even over millions of decisions.
                let rows = sqlx::query(
                    "SELECT policies, allowed, COUNT(*) AS n FROM audit_events \
                     WHERE request_id IS NOT NULL AND at >= $1 \
                     GROUP BY policies, allowed",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let text: String = col(row, "", "policies")?;
                        Ok(PolicyUse {
                            policies: serde_json::from_str(&text)
                                .map_err(|e| StoreError::corrupt("policies", e))?,
                            allowed: col(row, "", "allowed")?,
                            decisions: col(row, "", "n")?,
                        })
                    })
                    .collect()
            }

            async fn purge_audit(&self, before: Timestamp) -> StoreResult<AuditPurge> {
                let mut tx = self.begin_write().await?;
                let events = sqlx::query("DELETE FROM audit_events WHERE at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // A slice inserted by an instance still running the code before migration
                // 0004 has no last use (0): its first use stands in for it.
                let slices = sqlx::query(
                    "DELETE FROM audit_slices WHERE last_seen < $1 AND first_seen < $1",
                )
                .bind(before.saturating_sub(crate::records::AUDIT_SLICE_SLACK_SECS))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(AuditPurge { events, slices })
            }

            async fn count_audit(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn apply_seed(&self, seed: &ValidSeed, now: Timestamp) -> StoreResult<ImportSummary> {
                let mut tx = self.begin_write().await?;
                let summary = apply_seed_in(&mut tx, seed, now).await?;
                let inv = vec![Invalidation::All];
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(summary)
            }
        }

        impl $Store {
            /// Insert audit events inside `tx` (the batch writer's and the phone transfer's).
            async fn insert_audit_events(
                tx: &mut sqlx::Transaction<'static, $Db>,
                events: &[AuditEvent],
            ) -> StoreResult<()> {
                Self::insert_audit_events_as(tx, events, false).await
            }

            /// `ignore_existing`: ids the table already has are skipped instead of failing
            /// the batch (the recovery of a crashed instance's journal, which may hold events
            /// the store got before the crash). Everywhere else a duplicate is a bug, refused.
            async fn insert_audit_events_as(
                tx: &mut sqlx::Transaction<'static, $Db>,
                events: &[AuditEvent],
                ignore_existing: bool,
            ) -> StoreResult<()> {
                // 18 parameters a row: 256 rows stay under both backends' parameter limits.
                for chunk in crate::sql_impl::fixed_chunks(events) {
                    let mut qb = sqlx::QueryBuilder::<$Db>::new(
                        "INSERT INTO audit_events (id, at, request_id, session_id, person, \
                         enterprise, role, entry, action, path, allowed, policies, reason, \
                         policy_version, client_addr, detail, slice_hash, context) ",
                    );
                    qb.push_values(chunk, |mut b, e| {
                        let context = e.legacy_login_until.map(|until| {
                            serde_json::json!({ "legacy_login_until": until }).to_string()
                        });
                        b.push_bind(e.id.clone())
                            .push_bind(e.at)
                            .push_bind(e.request_id.clone())
                            .push_bind(e.session_id.clone())
                            .push_bind(e.person.as_ref().map(|p| p.as_str().to_string()))
                            .push_bind(e.enterprise.as_ref().map(|p| p.as_str().to_string()))
                            .push_bind(e.role.map(|r| r.as_str()))
                            .push_bind(e.entry.map(|r| r.as_str()))
                            .push_bind(e.action.clone())
                            .push_bind(e.path.clone())
                            .push_bind(e.allowed)
                            .push_bind(serde_json::Value::from(e.policies.clone()).to_string())
                            .push_bind(e.reason.clone())
                            .push_bind(e.policy_version.clone())
                            .push_bind(e.client_addr.clone())
                            .push_bind(e.detail.clone())
                            .push_bind(e.slice.as_ref().map(|s| s.hash.to_string()))
                            .push_bind(context);
                    });
                    if ignore_existing {
                        qb.push(" ON CONFLICT (id) DO NOTHING");
                    }
                    qb.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            async fn transfer_phone_once(
                &self,
                id: &IdNumber,
                phone: &Phone,
                now: Timestamp,
                audit: &PhoneAudit,
            ) -> StoreResult<Option<IdNumber>> {
                let mut tx = self.begin_write().await?;
                // Racing transfers of one number run one after the other (SQLite: the write
                // lock taken by BEGIN IMMEDIATE; PostgreSQL: an advisory lock on the number),
                // otherwise two of them lock the two persons' rows in opposite orders.
                self.lock_key(&mut tx, phone.as_str()).await?;
                let previous: Vec<String> = sqlx::query_scalar(
                    "UPDATE persons SET phone = NULL, updated_at = $3 \
                     WHERE phone = $1 AND id_number <> $2 RETURNING id_number",
                )
                .bind(phone.as_str())
                .bind(id.as_str())
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let n = sqlx::query(
                    "UPDATE persons SET phone = $1, updated_at = $3 WHERE id_number = $2",
                )
                .bind(phone.as_str())
                .bind(id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                let previous = match previous.first() {
                    Some(p) => Some(decode::id_number("id_number", p)?),
                    None => None,
                };
                // The record of the transfer commits with it: a crash leaves both or neither.
                let mut events: Vec<AuditEvent> = audit.bound.iter().cloned().collect();
                if let (Some(p), Some(cleared)) = (&previous, &audit.cleared) {
                    let mut ev = cleared.clone();
                    ev.person = Some(p.clone());
                    events.push(ev);
                }
                Self::insert_audit_events(&mut tx, &events).await?;
                let mut inv = vec![Invalidation::Person { id_number: id.clone() }];
                if let Some(p) = &previous {
                    inv.push(Invalidation::Person { id_number: p.clone() });
                }
                self.notify(&mut tx, &inv).await?;
                tx.commit().await?;
                self.publish(inv);
                Ok(previous)
            }
        }

        async fn insert_binding<'e, E>(
            exec: E,
            b: &Binding,
            granted_by: Option<&str>,
        ) -> StoreResult<()>
        where
            E: sqlx::Executor<'e, Database = $Db>,
        {
            sqlx::query(
                "INSERT INTO bindings (id, person, enterprise, role, permissions, valid_from, \
                 valid_until, enterprise_confirmed, person_confirmed, revoked_at, created_at, \
                 updated_at, updated_by, granted_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&b.id)
            .bind(b.person.as_str())
            .bind(b.enterprise.as_str())
            .bind(b.role.as_str())
            .bind(b.permissions.as_deref().map(decode::groups_json))
            .bind(b.valid_from)
            .bind(b.valid_until)
            .bind(b.enterprise_confirmed)
            .bind(b.person_confirmed)
            .bind(b.revoked_at)
            .bind(b.created_at)
            .bind(b.updated_at)
            .bind(&b.updated_by)
            .bind(granted_by)
            .execute(exec)
            .await?;
            Ok(())
        }

        /// Revokes, in `tx`, the pending grants (not yet confirmed by their person) that the
        /// holder of binding `granter` made; `updated_by` keeps the granter. Returns their ids.
        async fn revoke_pending_grants_of(
            tx: &mut Tx,
            granter: &str,
            now: Timestamp,
        ) -> StoreResult<Vec<String>> {
            let rows = sqlx::query(
                "UPDATE bindings SET revoked_at = $2, updated_at = $2 \
                 WHERE granted_by = $1 AND revoked_at IS NULL AND person_confirmed = FALSE \
                 RETURNING id",
            )
            .bind(granter)
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter()
                .map(|r| r.try_get::<String, _>("id").map_err(|e| StoreError::corrupt("id", e)))
                .collect()
        }

        async fn apply_seed_in(
            tx: &mut Tx,
            seed: &ValidSeed,
            now: Timestamp,
        ) -> StoreResult<ImportSummary> {
            let mut sum = ImportSummary::default();
            for p in &seed.persons {
                // Free the number / username from another seeded person first (validation made
                // sure any current holder is in the seed and gets its own value below).
                if let Some(phone) = &p.phone {
                    sqlx::query(
                        "UPDATE persons SET phone = NULL, updated_at = $3 \
                         WHERE phone = $1 AND id_number <> $2",
                    )
                    .bind(phone.as_str())
                    .bind(p.id_number.as_str())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                if let Some(username) = &p.username {
                    sqlx::query(
                        "UPDATE persons SET username = NULL, updated_at = $3 \
                         WHERE username = $1 AND id_number <> $2",
                    )
                    .bind(username)
                    .bind(p.id_number.as_str())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM persons WHERE id_number = $1")
                        .bind(p.id_number.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                if exists.is_some() {
                    // The password is never touched: the person may have changed it.
                    let n = sqlx::query(
                        "UPDATE persons SET name = $2, username = $3, phone = $4, updated_at = $5 \
                         WHERE id_number = $1 AND (name IS DISTINCT FROM $2 \
                         OR username IS DISTINCT FROM $3 OR phone IS DISTINCT FROM $4)",
                    )
                    .bind(p.id_number.as_str())
                    .bind(&p.name)
                    .bind(p.username.as_deref())
                    .bind(p.phone.as_ref().map(Phone::as_str))
                    .bind(now)
                    .execute(&mut **tx)
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
                    .bind(p.id_number.as_str())
                    .bind(&p.name)
                    .bind(p.username.as_deref())
                    .bind(p.phone.as_ref().map(Phone::as_str))
                    .bind(hash.expose())
                    .bind(p.must_change_password)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    sum.persons_created += 1;
                }
            }
            for e in &seed.enterprises {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM enterprises WHERE taxpayer_id = $1")
                        .bind(e.taxpayer_id.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                if exists.is_some() {
                    let n = sqlx::query(
                        "UPDATE enterprises SET name = $2, is_agency = $3, phone = $4, \
                         updated_at = $5 WHERE taxpayer_id = $1 AND (name IS DISTINCT FROM $2 \
                         OR is_agency IS DISTINCT FROM $3 OR phone IS DISTINCT FROM $4)",
                    )
                    .bind(e.taxpayer_id.as_str())
                    .bind(&e.name)
                    .bind(e.is_agency)
                    .bind(e.phone.as_ref().map(Phone::as_str))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    sum.enterprises_updated += n;
                } else {
                    sqlx::query(
                        "INSERT INTO enterprises (taxpayer_id, name, is_agency, \
                         legacy_password_hash, phone, failed_logins, locked_until, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, 0, NULL, $6, $6)",
                    )
                    .bind(e.taxpayer_id.as_str())
                    .bind(&e.name)
                    .bind(e.is_agency)
                    .bind(e.legacy_password_hash.as_ref().map(Secret::expose))
                    .bind(e.phone.as_ref().map(Phone::as_str))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    sum.enterprises_created += 1;
                }
            }
            for b in &seed.bindings {
                let existing: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM bindings WHERE person = $1 AND enterprise = $2 \
                     AND role = $3 AND revoked_at IS NULL",
                )
                .bind(b.person.as_str())
                .bind(b.enterprise.as_str())
                .bind(b.role.as_str())
                .fetch_optional(&mut **tx)
                .await?;
                let perms = b.permissions.as_deref().map(decode::groups_json);
                match existing {
                    Some(id) => {
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
                        .bind(&id)
                        .bind(perms)
                        .bind(b.valid_from)
                        .bind(b.valid_until)
                        .bind(b.enterprise_confirmed)
                        .bind(b.person_confirmed)
                        .bind(now)
                        .execute(&mut **tx)
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
                        insert_binding(&mut **tx, &binding, None).await?;
                        sum.bindings_created += 1;
                    }
                }
            }
            for g in &seed.agreements {
                let existing: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM agency_agreements WHERE agency = $1 AND client = $2 \
                     AND revoked_at IS NULL",
                )
                .bind(g.agency.as_str())
                .bind(g.client.as_str())
                .fetch_optional(&mut **tx)
                .await?;
                let scope = decode::groups_json(&g.scope);
                let (id, mut changed, created) = match existing {
                    Some(id) => {
                        let n = sqlx::query(
                            "UPDATE agency_agreements SET scope = $2, \
                             valid_from = COALESCE($3, valid_from), valid_until = $4, \
                             client_confirmed = (client_confirmed OR $5), updated_at = $6 \
                             WHERE id = $1 AND (scope IS DISTINCT FROM $2 \
                             OR valid_from IS DISTINCT FROM COALESCE($3, valid_from) \
                             OR valid_until IS DISTINCT FROM $4 \
                             OR client_confirmed IS DISTINCT FROM (client_confirmed OR $5))",
                        )
                        .bind(&id)
                        .bind(&scope)
                        .bind(g.valid_from)
                        .bind(g.valid_until)
                        .bind(g.client_confirmed)
                        .bind(now)
                        .execute(&mut **tx)
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
                        .bind(&id)
                        .bind(g.agency.as_str())
                        .bind(g.client.as_str())
                        .bind(&scope)
                        .bind(g.valid_from.unwrap_or(now))
                        .bind(g.valid_until)
                        .bind(g.client_confirmed)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                        sum.agreements_created += 1;
                        (id, false, true)
                    }
                };
                let current: Vec<String> = sqlx::query_scalar(
                    "SELECT person FROM agreement_staff WHERE agreement_id = $1",
                )
                .bind(&id)
                .fetch_all(&mut **tx)
                .await?;
                for gone in current.iter().filter(|c| !g.staff.iter().any(|s| s.as_str() == c.as_str())) {
                    sqlx::query("DELETE FROM agreement_staff WHERE agreement_id = $1 AND person = $2")
                        .bind(&id)
                        .bind(gone)
                        .execute(&mut **tx)
                        .await?;
                    changed = true;
                }
                for new in g.staff.iter().filter(|s| !current.iter().any(|c| c == s.as_str())) {
                    sqlx::query("INSERT INTO agreement_staff (agreement_id, person) VALUES ($1, $2)")
                        .bind(&id)
                        .bind(new.as_str())
                        .execute(&mut **tx)
                        .await?;
                    changed = true;
                }
                if changed && !created {
                    sum.agreements_updated += 1;
                }
            }
            Ok(sum)
        }
    };
}

pub(crate) use sql_store_impl;

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_chunks_cover_everything_in_five_shapes() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 300, 513, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = super::fixed_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "{n}");
            assert!(
                chunks
                    .iter()
                    .all(|c| [256, 64, 16, 4, 1].contains(&c.len()))
            );
        }
    }
}
