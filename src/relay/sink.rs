//! The `relay` sink: statsd flush output routed through the relay's rules
//! and clusters, as if each flushed line had been received on 2003. One
//! process can so aggregate statsd and place the aggregates on the same
//! carbon-caches, with the same placement, as the carbon it relays.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::router::Router;
use crate::flush::naming::{for_each_graphite_line, Naming};
use crate::sink::{BoxFuture, Sink, SinkMsg};
use crate::stats::{incr, SinkStats};

/// Routes every flushed line; never waits (the relay's queues are bounded
/// and count their drops).
pub struct RelaySink {
    name: String,
    router: Arc<Router>,
    naming: Naming,
    stats: Arc<SinkStats>,
}

impl RelaySink {
    pub fn new(name: String, router: Arc<Router>, naming: Naming, stats: Arc<SinkStats>) -> Self {
        RelaySink {
            name,
            router,
            naming,
            stats,
        }
    }
}

impl Sink for RelaySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, mut rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        Box::pin(async move {
            while let Some(msg) = rx.recv().await {
                let SinkMsg::Flush(batch) = msg else {
                    continue;
                };
                let ts = batch.timestamp as i64;
                let mut n = 0;
                for_each_graphite_line(&batch, &self.naming, &mut |name, value| {
                    self.router.route(name.as_bytes(), value, ts);
                    n += 1;
                });
                incr(&self.stats.lines_sent, n);
                incr(&self.stats.flushes_sent, 1);
            }
        })
    }
}
