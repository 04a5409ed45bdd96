//! What the shared SQL needs of a sqlx backend, as one trait the compiler carries along.
//!
//! sqlx states its requirements on the bound and decoded values (`String: Encode<'_, DB>`…),
//! and Rust does not imply such bounds from a trait, so generic code would repeat a dozen of
//! them on every function. Here each becomes a supertrait of [`Dialect`] instead (`Binds<T>`,
//! `Decodes<T>`, bounds on the associated types), which *are* implied: the SQL of every concern
//! is written once as `fn …<D: Dialect>` and binds with [`BindArg::arg`], reads with
//! [`Cols::col`]. SQLite and PostgreSQL each implement `Dialect` beside their store
//! (`sqlite.rs`, `postgres.rs`) with what differs: executors, the staff aggregation and the
//! migrations.

use std::future::Future;

use sqlx::query::Query;
use sqlx::query_builder::Separated;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};

use crate::error::StoreError;
use crate::store_api::StoreResult;

/// A write transaction (or any transaction) of backend `D`.
pub(crate) type Tx<D> = sqlx::Transaction<'static, D>;

/// The statements that differ only by the backend's string aggregation, built once per backend.
pub(crate) struct Statements {
    /// The session slice: session, person, enterprise, agency, binding, agreement with staff.
    pub(crate) slice: String,
    /// The same slice by the session's public id (an AuthZEN re-read, CONTRACT section 9).
    pub(crate) slice_by_id: String,
    /// `SELECT <agreement with staff> FROM agency_agreements g`.
    pub(crate) agreement_select: String,
}

/// A sqlx backend the shared SQL runs on. Both accept the same statements (`$n` placeholders,
/// `RETURNING`, `ON CONFLICT`, partial indexes, `IS DISTINCT FROM`); what differs is here.
pub(crate) trait Dialect:
    Database<Arguments: IntoArguments<Self>, QueryResult: Affected, Row: Send>
    + for<'a> Binds<&'a str>
    + for<'a> Binds<Option<&'a str>>
    + Binds<String>
    + Binds<Option<String>>
    + Binds<i64>
    + Binds<Option<i64>>
    + Binds<i32>
    + Binds<bool>
    + Decodes<String>
    + Decodes<Option<String>>
    + Decodes<i64>
    + Decodes<Option<i64>>
    + Decodes<i32>
    + Decodes<bool>
{
    /// The string aggregation that lists an agreement's staff as `a,b,c`.
    const STAFF_AGG: &'static str;

    /// What runs a statement on one connection (inside a transaction).
    type Conn<'c>: Executor<'c, Database = Self>;
    /// What runs a statement on any connection of the pool.
    type Shared<'p>: Executor<'p, Database = Self>;

    fn conn(tx: &mut Tx<Self>) -> Self::Conn<'_>;
    fn shared(pool: &Pool<Self>) -> Self::Shared<'_>;

    /// The statements built with [`Self::STAFF_AGG`].
    fn statements() -> &'static Statements;

    /// Apply this backend's embedded migrations.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = StoreResult<()>> + Send;

    /// Audit storage upkeep at `now`: PostgreSQL makes the day partitions around it (see
    /// `postgres::audit_days`); SQLite has nothing to do.
    fn prepare_audit_days(
        pool: &Pool<Self>,
        now: crate::model::Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Retention's first step: drop the whole days of audit events before `before` where the
    /// backend keeps days apart (PostgreSQL); the number of events dropped.
    fn drop_audit_days(
        pool: &Pool<Self>,
        before: crate::model::Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Run a statement inside `tx`.
pub(crate) fn on<D: Dialect>(tx: &mut Tx<D>) -> D::Conn<'_> {
    D::conn(tx)
}

/// `T` can be bound as a parameter of backend `Self`.
pub(crate) trait Binds<T>: Database {
    fn bind_to(
        query: Query<'_, Self, Self::Arguments>,
        value: T,
    ) -> Query<'_, Self, Self::Arguments>;
    fn push_to(list: &mut Separated<'_, Self, &'static str>, value: T);
}

impl<'t, D: Database, T> Binds<T> for D
where
    T: Encode<'t, D> + Type<D>,
{
    fn bind_to(query: Query<'_, D, D::Arguments>, value: T) -> Query<'_, D, D::Arguments> {
        query.bind(value)
    }

    fn push_to(list: &mut Separated<'_, D, &'static str>, value: T) {
        list.push_bind(value);
    }
}

/// `query.arg(v)`: `Query::bind` for generic code (its bound lives in [`Binds`]).
pub(crate) trait BindArg<D: Database> {
    fn arg<T>(self, value: T) -> Self
    where
        D: Binds<T>;
}

impl<D: Database> BindArg<D> for Query<'_, D, D::Arguments> {
    fn arg<T>(self, value: T) -> Self
    where
        D: Binds<T>,
    {
        D::bind_to(self, value)
    }
}

/// `values.arg(v)`: `Separated::push_bind` for generic code.
impl<D: Database> BindArg<D> for &mut Separated<'_, D, &'static str> {
    fn arg<T>(self, value: T) -> Self
    where
        D: Binds<T>,
    {
        D::push_to(self, value);
        self
    }
}

/// A column of backend `Self` can be read as `T`.
pub(crate) trait Decodes<T>: Database {
    fn get(row: &Self::Row, column: &str) -> Result<T, sqlx::Error>;
    fn first(row: &Self::Row) -> Result<T, sqlx::Error>;
}

impl<D: Database, T> Decodes<T> for D
where
    T: for<'r> Decode<'r, D> + Type<D>,
    for<'c> &'c str: ColumnIndex<D::Row>,
    usize: ColumnIndex<D::Row>,
{
    fn get(row: &D::Row, column: &str) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }

    fn first(row: &D::Row) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(row, 0)
    }
}

/// Reading a row of any dialect: `row.col("b_", "id")` is column `b_id`.
pub(crate) trait Cols: sqlx::Row<Database: Dialect> {
    fn col<T>(&self, prefix: &str, name: &str) -> StoreResult<T>
    where
        Self::Database: Decodes<T>,
    {
        let c = format!("{prefix}{name}");
        <Self::Database as Decodes<T>>::get(self, &c).map_err(|e| StoreError::corrupt(&c, e))
    }

    /// The first column (`RETURNING id`, `SELECT COUNT(*)`), failing as `query_scalar` does.
    fn only<T>(&self) -> Result<T, sqlx::Error>
    where
        Self::Database: Decodes<T>,
    {
        <Self::Database as Decodes<T>>::first(self)
    }
}

impl<R: sqlx::Row<Database: Dialect>> Cols for R {}

/// Run `query`; the number of rows it touched.
pub(crate) async fn touched<'e, D: Dialect>(
    exec: impl Executor<'e, Database = D>,
    query: Query<'e, D, D::Arguments>,
) -> StoreResult<u64> {
    Ok(query.execute(exec).await?.rows_affected())
}

/// Run `query`, a statement that must touch a row: `NotFound` when it touched none.
pub(crate) async fn found_in<'e, D: Dialect>(
    exec: impl Executor<'e, Database = D>,
    query: Query<'e, D, D::Arguments>,
) -> StoreResult<()> {
    if touched(exec, query).await? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// `rows_affected`, which each backend's result has but sqlx's trait does not.
pub(crate) trait Affected {
    fn rows_affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}
