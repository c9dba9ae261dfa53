//! The `relay` sink: statsd flush output routed through the relay's rules
//! and clusters, as if each flushed line had been received on 2003. One
//! process can so aggregate statsd and place the aggregates on the same
//! carbon-caches, with the same placement, as the carbon it relays.
//!
//! Imports, besides `sink` itself: `check`, `flush`, `relay`, `stats`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    keys_of, BoxFuture, BuildCx, Built, Sink, SinkConfig, SinkError, SinkKind, SinkMsg, ValidateCx,
};
use crate::check::Bad;
use crate::flush::naming::{for_each_graphite_line, Naming};
use crate::relay::router::Router;
use crate::stats::{incr, SinkStats};

/// `[[sink]] type = "relay"`: only `name` and `queue`.
pub struct Kind;

/// The relay sink's table: no keys of its own.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRelaySink {}

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn keys(&self) -> Vec<String> {
        keys_of::<RawRelaySink>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let RawRelaySink {} = cx.table(table)?;
        if !cx.has_relay {
            return Err(cx.bad(
                "type",
                "a relay sink needs a [relay] section to route through",
            ));
        }
        Ok(Arc::new(RelaySinkConfig))
    }
}

/// A relay sink's settings: none; it routes through the running relay.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySinkConfig;

impl SinkConfig for RelaySinkConfig {
    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        let router = cx.relay.clone().ok_or_else(|| SinkError::NoRelay {
            sink: cx.name.clone(),
        })?;
        Ok(Built::sink(RelaySink::new(
            cx.name.clone(),
            router,
            cx.naming.clone(),
            cx.stats.clone(),
        )))
    }
}

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
