//! statsyard: a StatsD- and Graphite-compatible metrics aggregation server.
//!
//! The data path, and the module that owns each step:
//!
//! ```text
//! listener (bytes) → parse (MetricRef, borrowed) → aggregate (per-thread Shard)
//!     → flush (Registry → FlushBatch, Graphite naming) → sink (own task, own queue)
//! ```
//!
//! - [`metric`]: the data types shared by parse and aggregate. Pure data.
//! - [`parse`]: wire formats; no I/O, no async.
//! - [`aggregate`]: shards on the hot path, the registry that persists across flushes.
//! - [`flush`]: the reference's `process_metrics` and graphite naming, pure.
//! - [`sink`]: console, graphite (text and pickle), repeater.
//! - [`deliver`]: the one delivery engine of every output that sends over a
//!   connection (graphite, repeater TCP, relay destinations) or HTTP: buffer,
//!   backoff, spool, shutdown deadline, counters; and the carbon encoders.
//! - [`spool`]: the disk spool behind the delivery engines.
//! - [`events`]: DogStatsD events, liveness transitions, service checks.
//! - [`host`]: host stats (CPU, memory, disks, network, processes) into a shard.
//! - [`liveness`]: sources and series that go silent, reported.
//! - [`listener`]: UDP receive threads, TCP and unix stream listeners.
//! - [`config`]: TOML and the reference's `config.js`, validated into [`config::Config`].
//! - [`runtime`]: start and reload (SIGHUP, `POST /-/reload`): diff the new config, apply what is live.
//! - [`server`]: wires it all together and owns the ordered shutdown.
//! - [`stats`]: self-metrics (atomics, no globals).
//! - [`supervise`]: restarts a task that panicked or failed, with backoff, counted.

pub mod admin;
pub mod aggregate;
pub mod check;
pub mod config;
pub mod deliver;
pub mod events;
pub mod exposition;
pub mod flush;
pub mod flusher;
pub mod forward;
pub mod front;
pub mod gate;
pub mod host;
pub mod http;
pub mod listener;
pub mod liveness;
pub mod log_limit;
pub mod metric;
pub mod parse;
pub mod relay;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod state;
pub mod stats;
pub mod supervise;
pub mod sys;
pub mod tls;
pub mod web_config;
