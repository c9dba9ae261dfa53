//! Sinks: where flushes (and, for the repeater, raw packets) go.
//!
//! Every sink runs as its own task fed by its own bounded queue, so a slow or
//! dead destination never holds up the flusher, ingest, or another sink. The
//! queue closing is the shutdown signal: a sink then delivers what it still
//! holds, within its shutdown deadline, and returns.

pub mod console;
pub mod graphite;
pub mod pickle;
pub mod repeater;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::flush::naming::Naming;
use crate::flush::FlushBatch;
use crate::stats::SinkStats;

/// What a sink's queue carries.
#[derive(Debug, Clone)]
pub enum SinkMsg {
    /// One flush's results.
    Flush(Arc<FlushBatch>),
    /// One received statsd packet, exactly as it arrived (repeater only).
    Raw(Bytes),
}

/// A boxed future, for trait objects.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One destination. Built from a [`SinkSpec`], then `run` until its queue closes.
pub trait Sink: Send {
    /// The configured name, used in logs and self-metrics.
    fn name(&self) -> &str;
    /// Whether this sink wants [`SinkMsg::Raw`] packets rather than flushes.
    fn wants_raw(&self) -> bool {
        false
    }
    /// Consume messages until the queue closes, then deliver what is held
    /// (bounded by the shutdown deadline) and return.
    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture;
}

/// A configured sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Unique among sinks; defaults to the type (`graphite`, `graphite-2`, ...).
    pub name: String,
    /// Capacity of the sink's queue, in messages. A full queue drops the newest
    /// message and counts it.
    pub queue: usize,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Console(console::ConsoleConfig),
    Graphite(graphite::GraphiteConfig),
    Repeater(repeater::RepeaterConfig),
}

/// Errors building a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A destination address that cannot be used.
    #[error("sink {sink}: bad address {addr:?}: {reason}")]
    BadAddress {
        sink: String,
        addr: String,
        reason: String,
    },
    /// An I/O error setting the sink up.
    #[error("sink {sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
}

/// Build the sink a spec describes.
pub fn build(
    spec: &SinkSpec,
    naming: &Naming,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
) -> Result<Box<dyn Sink>, SinkError> {
    let _ = (spec, naming, stats, shutdown_timeout);
    todo!("sink::build")
}
