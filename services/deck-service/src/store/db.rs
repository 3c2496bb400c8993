//! The PostgreSQL handle of the store, and the one place its statements are counted.
//!
//! Every statement a request runs goes through [`Db::pool`] or [`Tx::conn`], whose
//! executor counts it before handing it to sqlx; [`Db::begin`] counts the BEGIN and
//! [`Tx::commit`] the COMMIT. So `deck_db_queries_total` ("PostgreSQL statements run for
//! requests") and the tests that assert a cached read ran none cannot miss a query that
//! someone adds later. Work of the process itself (deleting delivered outbox rows,
//! the drainer) uses [`Db::uncounted`].

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use futures::{future::BoxFuture, stream::BoxStream};
use sqlx::{
    Describe, Either, Execute, Executor, PgConnection, PgPool, Postgres, Transaction,
    postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo},
};

/// The pool and the statement counter; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    statements: Arc<AtomicU64>,
}

impl Db {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            statements: Arc::default(),
        }
    }

    /// Statements run so far on behalf of requests.
    pub fn statements(&self) -> Arc<AtomicU64> {
        self.statements.clone()
    }

    /// The pool, counting each statement run on it.
    pub fn pool(&self) -> Counted<'_, &PgPool> {
        Counted {
            inner: &self.pool,
            statements: &self.statements,
        }
    }

    /// The pool for the process's own bookkeeping: not counted.
    pub fn uncounted(&self) -> &PgPool {
        &self.pool
    }

    /// BEGIN (counted).
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        count(&self.statements);
        Ok(Tx {
            tx: self.pool.begin().await?,
            statements: self.statements.clone(),
        })
    }

    /// Exports the counter as `deck_db_queries_total`.
    pub fn register_metrics(&self, metrics: &common::metrics::Metrics) {
        let statements = self.statements.clone();
        metrics.register_counter_fn(
            "deck_db_queries",
            "PostgreSQL statements run for requests.",
            move || statements.load(Ordering::Relaxed),
        );
    }
}

fn count(statements: &AtomicU64) {
    statements.fetch_add(1, Ordering::Relaxed);
}

/// An open transaction whose statements are counted. Dropped without
/// [`commit`](Self::commit), it rolls back.
#[derive(Debug)]
pub struct Tx {
    tx: Transaction<'static, Postgres>,
    statements: Arc<AtomicU64>,
}

impl Tx {
    /// The transaction's connection, counting each statement run on it.
    pub fn conn(&mut self) -> Counted<'_, &mut PgConnection> {
        Counted {
            inner: &mut *self.tx,
            statements: &self.statements,
        }
    }

    /// COMMIT (counted).
    pub async fn commit(self) -> sqlx::Result<()> {
        count(&self.statements);
        self.tx.commit().await
    }
}

/// An executor that counts each statement, then runs it on `inner`.
///
/// sqlx's provided methods (`execute`, `fetch_all`, `fetch_one`, …) all end in
/// `fetch_many` or `fetch_optional`, so counting those two counts every statement once.
/// The count is taken when the statement is issued, as a client that hangs up midway
/// has still made PostgreSQL run it.
#[derive(Debug)]
pub struct Counted<'s, E> {
    inner: E,
    statements: &'s AtomicU64,
}

impl<'c, E> Executor<'c> for Counted<'_, E>
where
    E: Executor<'c, Database = Postgres>,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxStream<'e, sqlx::Result<Either<PgQueryResult, PgRow>>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Postgres>,
    {
        count(self.statements);
        self.inner.fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, Q>(self, query: Q) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Postgres>,
    {
        count(self.statements);
        self.inner.fetch_optional(query)
    }

    // Preparing and describing run no statement of ours (and the store does neither).
    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<PgStatement<'q>>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, sqlx::Result<Describe<Postgres>>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}
