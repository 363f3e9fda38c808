//! testkit: what the process-level tests (`system-tests/tests/`) share, kept out
//! of the `tracectl` binary users run. A dev-dependency only.
//!
//! - [`installed`]: where `scripts/test.sh` put Kafka's jars and Jaeger's binary.
//! - [`kafka`]: Apache Kafka as a single-node KRaft broker of one test's own.
//! - [`jaeger`]: Jaeger v2 with the repository's own config, on ports of its own.
//! - [`env`](mod@env): the four service binaries on fresh databases, wired to a broker
//!   and an OTLP endpoint, and the counts the tests check afterwards.
//! - [`otlp`]: a tee in front of Jaeger's OTLP endpoint, and a Jaeger without v3.
//! - [`receiver`]: an OTLP receiver with TLS of a test CA, a required bearer
//!   token and a choice of HTTP versions (credential and protocol tests);
//!   tracing-common-testing's, so that tracing-common's tests share it.
//! - [`proxy`]: a TCP proxy that makes a dependency refuse or hang.
//! - [`scan`]: finds personal data, secrets and query values in spans and logs.
//! - [`process`]: signals to one service, waiting for its exit, its restart.
//! - [`seed`]: the seed's order through a running stack, its trace checked.

pub mod cassandra;
pub mod env;
pub mod installed;
pub mod jaeger;
pub mod kafka;
pub mod otlp;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod scan;
pub mod seed;

pub use tracing_common_testing::otlp_receiver as receiver;
pub use tracing_common_testing::{closed_port, free_port};
