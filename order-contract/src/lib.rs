//! The contract between the order-flow services, written once: what goes over
//! HTTP and Kafka between them, and the trace the order flow must produce.
//!
//! Wire formats are byte-for-byte those the services have always exchanged
//! (each module's tests pin the exact JSON).
//!
//! - [`ids`]: user, product, order and event ids; one validation each.
//! - [`money`]: [`Cents`], parsed from JSON decimals without floating point.
//! - [`status`]: [`OrderStatus`], stored and sent as `pending`/`confirmed`/`rejected`.
//! - [`topics`]: the Kafka topics.
//! - [`events`]: [`OrderCreated`] on `order-events`, [`StockDecision`] on `inventory-events`.
//! - [`http`]: the bodies between services (stock check, order accepted, order view, user).
//! - [`error`]: the JSON error envelope, and (feature `axum`) the response and
//!   the JSON body extractor that answers in it.
//! - [`clients`] (feature `clients`): typed clients for user- and inventory-service.
//! - [`trace`]: the span names of the order flow and its trace tree, as
//!   `tracectl verify` and the tests check it (see SPANS.md for where each is born).

#[cfg(feature = "clients")]
pub mod clients;
pub mod error;
pub mod events;
pub mod http;
pub mod ids;
pub mod money;
pub mod status;
pub mod topics;
pub mod trace;

pub use events::{OrderCreated, StockDecision, StockDecisionKind};
pub use ids::{EventId, InvalidId, OrderId, ProductId, UserId};
pub use money::Cents;
pub use status::OrderStatus;
