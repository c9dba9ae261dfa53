//! The HTTP server (`/metrics`, `/health`, `/api/*`) and the reference's TCP
//! admin console.

pub mod admin;
pub mod mapping;
pub mod prometheus;
pub mod self_metrics;
