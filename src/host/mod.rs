//! Host statistics, as collectd or Stat Badger would send them next to a
//! statsd: CPU, memory and swap, load, disk space and I/O, network,
//! processes, uptime and statsyard's own process, read from /proc (the
//! `procfs` crate) and `statvfs`, written as statsd gauges and counters
//! into statsyard's own shard, so they go through the same pipeline as
//! what clients send: every output, `/metrics` (with `device`,
//! `interface`, `mount`, `process` labels), the series limits.
//!
//! - [`config`]: the `[host]` table and its validated settings.
//! - [`collect`]: the modules and what they keep between collections.
//! - [`write`]: names and tags.
//! - [`run`]: the collector's thread, started and replaced by the runtime
//!   from the config diff like every other part.
//!
//! docs/host.md is the user-facing description. Imports: `aggregate` (the
//! shard), `metric`, the counters, `check` and `supervise`.

pub mod collect;
pub mod config;
pub mod run;
pub mod write;

pub use config::{HostConfig, RawHost};
pub use run::HostTask;
