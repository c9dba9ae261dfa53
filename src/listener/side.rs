//! What ingest does besides aggregating, kept out of the metric path: it
//! tells liveness who sent each packet (and, by tag, each value), and hands
//! DogStatsD events and service checks to the events hub. Off (no
//! [`SideCtx`]), it costs one branch per packet and per value.
//!
//! Imports, besides `listener` itself: `events`, `liveness`, `parse`, `stats`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Ingest;
use crate::events::{CheckRecord, Event, Hub};
use crate::liveness::{Feed, Liveness, Peer};
use crate::parse::event::{Event as WireEvent, ServiceCheck};
use crate::stats::unix_now;

/// What every ingest of a server shares for liveness and events.
#[derive(Clone)]
pub struct SideCtx {
    pub liveness: Arc<Liveness>,
    pub hub: Arc<Hub>,
}

/// One ingest's side work.
#[derive(Default)]
pub struct Side {
    feed: Option<Feed>,
    hub: Option<Arc<Hub>>,
    /// The sender, as events name it.
    peer: Option<Peer>,
}

impl Side {
    /// A packet from the current peer.
    #[inline]
    pub fn packet(&mut self) {
        if let Some(f) = &mut self.feed {
            f.packet();
        }
    }

    /// A value with the canonical key `key`.
    #[inline]
    pub fn key(&mut self, key: &[u8]) {
        if let Some(f) = &mut self.feed {
            f.key(key);
        }
    }

    pub fn event(&mut self, e: &WireEvent<'_>) {
        if let Some(f) = &mut self.feed {
            f.tags(e.host, &e.tags);
        }
        if let Some(hub) = &self.hub {
            let source = self.peer.as_ref().map(|p| match p {
                Peer::Ip(ip) => ip.to_string(),
                Peer::Local(path) => path.to_string(),
            });
            let e = hub.publish(Event::received(e, unix_now(), source));
            tracing::debug!(id = e.id, title = %e.title, "event received");
        }
    }

    pub fn service_check(&mut self, c: &ServiceCheck<'_>, key: &[u8]) {
        if let Some(f) = &mut self.feed {
            f.tags(c.host, &c.tags);
        }
        if let Some(hub) = &self.hub {
            hub.record_check(CheckRecord::new(c, key, unix_now()));
        }
    }

    fn set_peer(&mut self, peer: Option<Peer>) {
        if let Some(f) = &mut self.feed {
            f.set_peer(peer.clone());
        }
        self.peer = peer;
    }
}

impl Ingest {
    /// This ingest with liveness and events.
    pub fn with_side(mut self, cx: &SideCtx) -> Ingest {
        self.side = Side {
            feed: Some(Feed::new(cx.liveness.clone())),
            hub: Some(cx.hub.clone()),
            peer: None,
        };
        self
    }

    /// One UDP datagram, from `from`.
    #[inline]
    pub fn packet_from(&mut self, data: &[u8], from: Option<SocketAddr>) {
        if self.side.feed.is_some() {
            self.side.set_peer(from.map(|a| Peer::Ip(a.ip())));
        }
        self.packet(data);
    }

    /// Who sends everything this ingest reads (a stream connection's peer).
    pub fn set_peer(&mut self, peer: Option<Peer>) {
        self.side.set_peer(peer);
    }
}
