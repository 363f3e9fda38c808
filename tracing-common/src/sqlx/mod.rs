//! Postgres CLIENT spans with the database semantic conventions, built with
//! the OpenTelemetry API, for sampled work only.
//!
//! [`Db`] wraps a sqlx pool. Each statement names its operation and table
//! where it runs, and becomes a span `{operation} {table}` with
//! `db.system.name=postgresql`, `db.namespace`, `server.address`,
//! `server.port`, `db.operation.name`, `db.collection.name`, the
//! parameterised `db.query.text` (bind values never appear; literals written
//! into the SQL become `?`), `db.response.returned_rows` (or
//! `db.response.affected_rows` for a statement that changed rows and returned
//! none) and, on failure, status ERROR, `error.type`,
//! `db.response.status_code` (the SQLSTATE) and an `exception` event:
//!
//! ```no_run
//! # async fn find(db: &tracing_common::Db) -> Result<(), sqlx::Error> {
//! let name: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE id = $1")
//!     .bind("u-1")
//!     .fetch_optional(db.statement("SELECT", "users"))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The statement is traced when the current span (`Context::current()`) is
//! sampled, with that span as its parent; otherwise it runs on the pool untouched, so a request the
//! sampler dropped builds nothing for its statements, and a statement outside
//! any trace (a poller, a migration) starts no trace of its own. In a
//! transaction ([`Db::begin`]) the decision is made once, where it began.

mod query_text;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, global::BoxedSpan};
use opentelemetry_semantic_conventions::attribute as semconv;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, PgConnection, PgPool, Postgres};

use query_text::QueryTexts;

/// A pool whose statements are CLIENT spans of the current trace when it is
/// sampled. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    shared: Arc<Shared>,
}

/// What every statement's span shares: the connection's attributes, and the
/// sanitised texts of the statements seen so far.
#[derive(Debug)]
struct Shared {
    connection: Vec<KeyValue>,
    texts: QueryTexts,
}

impl Db {
    pub fn new(pool: PgPool) -> Self {
        let options = pool.connect_options();
        let mut connection = vec![
            KeyValue::new(semconv::DB_SYSTEM_NAME, "postgresql"),
            KeyValue::new(semconv::SERVER_ADDRESS, options.get_host().to_owned()),
            KeyValue::new(semconv::SERVER_PORT, i64::from(options.get_port())),
        ];
        if let Some(database) = options.get_database() {
            connection.push(KeyValue::new(semconv::DB_NAMESPACE, database.to_owned()));
        }
        Self {
            pool,
            shared: Arc::new(Shared {
                connection,
                texts: QueryTexts::default(),
            }),
        }
    }

    /// The pool without tracing, for probes and pollers whose statements
    /// must never become traces.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// An executor for one statement: `operation` and `table` become
    /// `db.operation.name`, `db.collection.name` and the span name.
    pub fn statement(
        &self,
        operation: &'static str,
        table: &'static str,
    ) -> Statement<'_, &PgPool> {
        Statement {
            executor: &self.pool,
            span: sampled_context().map(|parent| SpanStart {
                shared: &self.shared,
                parent,
                operation,
                table,
            }),
        }
    }

    /// Begins a transaction, traced or not as the current span is: its
    /// statements go through [`Tx::statement`], and are children of the
    /// span the transaction began in.
    pub async fn begin(&self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(Tx {
            tx: self.pool.begin().await?,
            shared: &self.shared,
            parent: sampled_context(),
        })
    }
}

/// The current context (`Context::current()`) if its span is sampled.
fn sampled_context() -> Option<Context> {
    Context::map_current(|cx| cx.span().span_context().is_sampled().then(|| cx.clone()))
}

/// A transaction begun by [`Db::begin`]. Dropping it without
/// [`commit`](Self::commit) rolls it back.
#[derive(Debug)]
pub struct Tx<'a> {
    tx: sqlx::Transaction<'static, Postgres>,
    shared: &'a Shared,
    parent: Option<Context>,
}

impl Tx<'_> {
    /// An executor for one statement in this transaction, as [`Db::statement`].
    pub fn statement(
        &mut self,
        operation: &'static str,
        table: &'static str,
    ) -> Statement<'_, &mut PgConnection> {
        Statement {
            executor: &mut *self.tx,
            span: self.parent.clone().map(|parent| SpanStart {
                shared: self.shared,
                parent,
                operation,
                table,
            }),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// The executor [`Db::statement`] and [`Tx::statement`] return: `executor`
/// runs the statement, under a span when `span` is there.
#[derive(Debug)]
pub struct Statement<'a, X> {
    executor: X,
    span: Option<SpanStart<'a>>,
}

#[derive(Debug)]
struct SpanStart<'a> {
    shared: &'a Shared,
    parent: Context,
    operation: &'static str,
    table: &'static str,
}

impl SpanStart<'_> {
    fn start(self, sql: &str) -> StatementSpan {
        let mut attributes = Vec::with_capacity(self.shared.connection.len() + 3);
        attributes.extend_from_slice(&self.shared.connection);
        attributes.push(KeyValue::new(semconv::DB_OPERATION_NAME, self.operation));
        attributes.push(KeyValue::new(semconv::DB_COLLECTION_NAME, self.table));
        attributes.push(KeyValue::new(
            semconv::DB_QUERY_TEXT,
            self.shared.texts.get(sql),
        ));
        let tracer = crate::spans::tracer();
        let span = tracer.build_with_context(
            tracer
                .span_builder(format!("{} {}", self.operation, self.table))
                .with_kind(SpanKind::Client)
                .with_attributes(attributes),
            &self.parent,
        );
        StatementSpan {
            span,
            rows: 0,
            affected: 0,
        }
    }
}

/// One statement's span, ended (with what the statement returned) when the
/// statement's future or stream completes or is dropped.
struct StatementSpan {
    span: BoxedSpan,
    rows: u64,
    affected: u64,
}

impl StatementSpan {
    fn returned(&mut self, rows: u64) {
        self.rows += rows;
    }

    fn fail(&mut self, error: &sqlx::Error) {
        let error_type = match error {
            sqlx::Error::Database(e) => {
                let code = e.code().map(|c| c.into_owned());
                if let Some(code) = &code {
                    self.span.set_attribute(KeyValue::new(
                        semconv::DB_RESPONSE_STATUS_CODE,
                        code.clone(),
                    ));
                }
                code.unwrap_or_else(|| "database".to_owned())
            }
            other => error_kind(other).to_owned(),
        };
        let message = error.to_string();
        self.span.add_event(
            "exception",
            vec![
                KeyValue::new(semconv::EXCEPTION_TYPE, error_type.clone()),
                KeyValue::new(semconv::EXCEPTION_MESSAGE, message.clone()),
            ],
        );
        self.span
            .set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type));
        self.span.set_status(Status::error(message));
    }
}

impl Drop for StatementSpan {
    fn drop(&mut self) {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if self.rows == 0 && self.affected > 0 {
            self.span.set_attribute(KeyValue::new(
                "db.response.affected_rows",
                to_i64(self.affected),
            ));
        } else {
            self.span.set_attribute(KeyValue::new(
                semconv::DB_RESPONSE_RETURNED_ROWS,
                to_i64(self.rows),
            ));
        }
        self.span.end();
    }
}

/// Low-cardinality class of a failure that is not the database's own, for
/// `error.type`.
fn error_kind(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        sqlx::Error::Encode(_) => "encode",
        sqlx::Error::Configuration(_) => "configuration",
        _ => "client",
    }
}

/// A query taken apart, so its text can be read for the span while the
/// query still goes to the executor (`Execute::sql` consumes it). Reports
/// what the original would: the cached statement, the arguments once, and
/// `persistent` as read after the arguments were taken (which is what
/// drivers see: `query!`'s `Map` reports `false` once they are gone).
struct SplitQuery {
    sql: sqlx::SqlStr,
    statement: Option<PgStatement>,
    arguments: Option<Result<Option<sqlx::postgres::PgArguments>, sqlx::error::BoxDynError>>,
    persistent: bool,
}

impl SplitQuery {
    fn new<'q, E: Execute<'q, Postgres>>(mut query: E) -> Self {
        let statement = query.statement().cloned();
        let arguments = query.take_arguments();
        let persistent = query.persistent();
        Self {
            sql: query.sql(),
            statement,
            arguments: Some(arguments),
            persistent,
        }
    }
}

impl Execute<'_, Postgres> for SplitQuery {
    fn sql(self) -> sqlx::SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.statement.as_ref()
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<sqlx::postgres::PgArguments>, sqlx::error::BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// Only the two methods every other one is built on are traced (sqlx's
/// defaults route `execute`, `fetch`, `fetch_all` and `fetch_one` through
/// `fetch_many` or `fetch_optional`), so each statement is one span.
impl<'a, X> Executor<'a> for Statement<'a, X>
where
    X: Executor<'a, Database = Postgres> + 'a,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'a: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Some(start) = self.span else {
            return self.executor.fetch_many(query);
        };
        let query = SplitQuery::new(query);
        let mut span = start.start(query.sql.as_str());
        self.executor
            .fetch_many(query)
            .map(move |step| {
                match &step {
                    Ok(Either::Right(_)) => span.returned(1),
                    Ok(Either::Left(done)) => span.affected += done.rows_affected(),
                    Err(e) => span.fail(e),
                }
                step
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'a: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Some(start) = self.span else {
            return self.executor.fetch_optional(query);
        };
        let query = SplitQuery::new(query);
        let mut span = start.start(query.sql.as_str());
        self.executor
            .fetch_optional(query)
            .map(move |outcome| {
                match &outcome {
                    Ok(row) => span.returned(u64::from(row.is_some())),
                    Err(e) => span.fail(e),
                }
                outcome
            })
            .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'a: 'e,
    {
        self.executor.prepare_with(sql, parameters)
    }

    // sqlx's `macros` feature (on in this workspace) turns on its `offline`
    // feature, which adds this method to the trait.
    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'a: 'e,
    {
        self.executor.describe(sql)
    }
}
