//! The forwarding tier: agents on every host send each interval's
//! mergeable state to a global tier of aggregators sharded by series.
//!
//! - [`ring`]: which aggregator a series goes to (rendezvous hashing).

pub mod proto;
pub mod ring;
