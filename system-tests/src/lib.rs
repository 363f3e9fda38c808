//! The system tests live in `tests/`, one file per concern: `e2e.rs` (the
//! seed's order as one trace), `faults/` (a module per kind of fault), `bad_input.rs`, `startup.rs`,
//! `sampling.rs`, `jaeger.rs`, `tail_sampling.rs`, `cassandra.rs`,
//! `cluster.rs` (three Kafka nodes, two replicas of each service),
//! `compose_env.rs` (compose's wiring) and `traced_checkout.rs`
//! (tracing-common's example). Each starts what it needs with `testkit`.
