//! Postgres CLIENT spans with the database semantic conventions, for sampled
//! work only.
//!
//! [`Db`] holds one pool two ways: through `sqlx-otel`, where every statement
//! becomes a span named `{operation} {table}` with `db.system.name=postgresql`,
//! `db.namespace`, `server.address`, `db.operation.name`,
//! `db.collection.name` and the parameterised `db.query.text` (bind values
//! never appear); and plain. Each statement names its operation and table
//! where it runs:
//!
//! ```no_run
//! # async fn find(db: &tracing_common::db::Db) -> Result<(), sqlx::Error> {
//! let name: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE id = $1")
//!     .bind("u-1")
//!     .fetch_optional(db.statement("SELECT", "users"))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The statement is traced when the current span is sampled, with that span
//! as its parent; otherwise it runs on the plain pool, so a request the
//! sampler dropped builds no span, no attributes and no obfuscated query text
//! for its statements (about 8,000 instructions each), and a statement
//! outside any trace (a poller, a migration) starts no trace of its own.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt as _;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, PgConnection, PgPool, Postgres};

type TracedPool = sqlx_otel::Pool<Postgres>;

/// A pool whose statements are CLIENT spans of the current trace when it is
/// sampled. Cheap to clone (both handles share one pool).
#[derive(Clone, Debug)]
pub struct Db {
    plain: PgPool,
    traced: TracedPool,
}

impl Db {
    /// Wraps `pool`. The traced handle obfuscates query text (literals
    /// become `?`): statements bind their values as parameters, and
    /// obfuscation makes sure that a literal written into SQL by hand still
    /// never reaches a span.
    pub fn new(pool: PgPool) -> Self {
        let traced = sqlx_otel::PoolBuilder::from(pool.clone())
            .with_query_text_mode(sqlx_otel::QueryTextMode::Obfuscated)
            .build();
        Self {
            plain: pool,
            traced,
        }
    }

    /// The pool without tracing, for probes and pollers whose statements
    /// must never become traces.
    pub fn pool(&self) -> &PgPool {
        &self.plain
    }

    /// An executor for one statement: `operation` and `table` become
    /// `db.operation.name`, `db.collection.name` and the span name.
    pub fn statement(&self, operation: &'static str, table: &'static str) -> Statement<'_> {
        match sampled_context() {
            Some(cx) => Statement(Route::Traced(
                self.traced.with_operation(operation, table),
                cx,
            )),
            None => Statement(Route::Plain(&self.plain)),
        }
    }

    /// Begins a transaction, traced or not as the current span is: its
    /// statements go through [`Tx::statement`], and are children of the
    /// span the transaction began in.
    pub async fn begin(&self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(Tx(match sampled_context() {
            Some(cx) => TxInner::Traced(self.traced.begin().await?, cx),
            None => TxInner::Plain(self.plain.begin().await?),
        }))
    }
}

/// The current span's context if it is sampled: [`crate::spans::current_context`],
/// which sees through spans below an unsampled entry.
fn sampled_context() -> Option<Context> {
    let cx = crate::spans::current_context();
    cx.span().span_context().is_sampled().then_some(cx)
}

/// A transaction begun by [`Db::begin`]. Dropping it without
/// [`commit`](Self::commit) rolls it back.
#[derive(Debug)]
pub struct Tx<'a>(TxInner<'a>);

#[derive(Debug)]
enum TxInner<'a> {
    Plain(sqlx::Transaction<'static, Postgres>),
    Traced(sqlx_otel::Transaction<'a, Postgres>, Context),
}

impl<'t> Tx<'t> {
    /// An executor for one statement in this transaction, as [`Db::statement`].
    pub fn statement(
        &mut self,
        operation: &'static str,
        table: &'static str,
    ) -> TxStatement<'_, 't> {
        TxStatement(match &mut self.0 {
            TxInner::Plain(tx) => Route::Plain(&mut **tx),
            TxInner::Traced(tx, cx) => {
                Route::Traced(tx.with_operation(operation, table), cx.clone())
            }
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Plain(tx) => tx.commit().await,
            TxInner::Traced(tx, _) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Plain(tx) => tx.rollback().await,
            TxInner::Traced(tx, _) => tx.rollback().await,
        }
    }
}

/// Runs a statement on the plain executor, or on the traced one with the
/// sampled context current while sqlx-otel starts the span (it does so in
/// the call, before the returned future is first polled).
#[derive(Debug)]
enum Route<P, T> {
    Plain(P),
    Traced(T, Context),
}

/// The executor [`Db::statement`] returns.
#[derive(Debug)]
pub struct Statement<'a>(Route<&'a PgPool, sqlx_otel::Annotated<'a, TracedPool>>);

/// The executor [`Tx::statement`] returns, borrowing the transaction for `'a`.
#[derive(Debug)]
pub struct TxStatement<'a, 't>(
    Route<&'a mut PgConnection, sqlx_otel::AnnotatedMut<'a, sqlx_otel::Transaction<'t, Postgres>>>,
);

/// `sqlx::Executor` for a routed statement: every method goes to the chosen
/// executor, so the traced one keeps its own span bookkeeping (rows
/// returned or affected, errors) for each.
macro_rules! route_executor {
    (impl<'a $(, $extra:lifetime)*> for $ty:ty) => {
        impl<'a $(, $extra)*> Executor<'a> for $ty {
            type Database = Postgres;

            fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgQueryResult, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, execute(query))
            }

            fn execute_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxStream<'e, Result<PgQueryResult, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, execute_many(query))
            }

            fn fetch<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<PgRow, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, fetch(query))
            }

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, fetch_many(query))
            }

            fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<PgRow>, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, fetch_all(query))
            }

            fn fetch_one<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgRow, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, fetch_one(query))
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
            where
                'a: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                route!(self, fetch_optional(query))
            }

            fn prepare_with<'e>(
                self,
                sql: sqlx::SqlStr,
                parameters: &'e [PgTypeInfo],
            ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
            where
                'a: 'e,
            {
                route!(self, prepare_with(sql, parameters))
            }

            // sqlx-otel turns on sqlx's `offline` feature, which adds this
            // method to the trait.
            fn describe<'e>(
                self,
                sql: sqlx::SqlStr,
            ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
            where
                'a: 'e,
            {
                route!(self, describe(sql))
            }
        }
    };
}

macro_rules! route {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.0 {
            Route::Plain(executor) => executor.$method($($arg),*),
            Route::Traced(executor, cx) => {
                let _current = cx.attach();
                executor.$method($($arg),*)
            }
        }
    };
}

route_executor!(impl<'a> for Statement<'a>);
route_executor!(impl<'a, 't> for TxStatement<'a, 't>);
