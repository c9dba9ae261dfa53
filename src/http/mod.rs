//! The HTTP server: the status page (`/`), `/metrics`, `/health`, `/api/*`
//! and `POST /-/reload`.
//!
//! Handlers read the live aggregation state through the flusher
//! ([`crate::flusher::FlusherHandle`]): the registry has one owner,
//! the flusher thread, and requests are jobs it runs between flushes.
//! `/metrics` serves the Prometheus exporter output's latest rendering.
//!
//! Imports: [`crate::front`] (what the front ends share), the counters and
//! their renderers; never the runtime.

pub mod access;
pub mod api;
pub mod server;
pub mod status;
