//! [`Feed`]: one listener thread's or connection's side of liveness. It
//! tells [`Liveness`] who sent something, at most once a second per source,
//! so that a busy sender costs one hash lookup per packet (address) or per
//! value (tag), not one lock.
//!
//! With liveness off, a packet costs one relaxed atomic load and a value
//! one branch on a field.
//!
//! Imports nothing of the crate outside `liveness`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{Liveness, Mode, Tag};

/// Who sent the packets an [`Feed`] sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A UDP or TCP sender.
    Ip(IpAddr),
    /// A unix socket client, by the socket's path: `unix:<path>`.
    Local(Arc<str>),
}

/// A source seen this recently is not reported again (less when
/// `dark_after` is short: a quarter of it).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Sources remembered per feed before the memory is cleared.
const REMEMBER: usize = 4096;

/// One listener's view of liveness.
pub struct Feed {
    live: Arc<Liveness>,
    /// `live`'s settings as of `version`.
    version: u64,
    mode: Mode,
    tag: Option<Arc<Tag>>,
    /// How often a source is reported at most.
    every: Duration,
    peer: Option<Peer>,
    ips: HashMap<IpAddr, Instant>,
    names: HashMap<Box<[u8]>, Instant>,
}

impl Feed {
    pub fn new(live: Arc<Liveness>) -> Feed {
        Feed {
            live,
            version: u64::MAX,
            mode: Mode::Off,
            tag: None,
            every: REPORT_EVERY,
            peer: None,
            ips: HashMap::new(),
            names: HashMap::new(),
        }
    }

    /// The sender of what follows (per datagram, or once per connection).
    #[inline]
    pub fn set_peer(&mut self, peer: Option<Peer>) {
        self.peer = peer;
    }

    /// One packet from the current peer.
    #[inline]
    pub fn packet(&mut self) {
        let version = self.live.version();
        if version != self.version {
            self.refresh(version);
        }
        if self.mode == Mode::Address {
            match self.peer.clone() {
                Some(Peer::Ip(ip)) => self.ip(ip),
                Some(Peer::Local(path)) => self.name(path.as_bytes()),
                None => {}
            }
        }
    }

    /// One value whose canonical key is `key` (tag mode reads the tag).
    #[inline]
    pub fn key(&mut self, key: &[u8]) {
        if self.mode != Mode::Tag {
            return;
        }
        let Some(tag) = self.tag.clone() else { return };
        if let Some(v) = tag.in_key(key) {
            self.name(v);
        }
    }

    /// An event's or a service check's host and tags (tag mode).
    pub fn tags(&mut self, host: Option<&[u8]>, tags: &[&[u8]]) {
        if self.mode != Mode::Tag {
            return;
        }
        let Some(tag) = self.tag.clone() else { return };
        if let Some(v) = tag.in_tags(host, tags) {
            self.name(v);
        }
    }

    fn refresh(&mut self, version: u64) {
        let (mode, tag, dark_after) = self.live.mode();
        self.version = version;
        self.mode = mode;
        self.tag = tag;
        self.every = REPORT_EVERY.min(dark_after / 4);
        self.ips.clear();
        self.names.clear();
    }

    fn ip(&mut self, ip: IpAddr) {
        let now = Instant::now();
        if self
            .ips
            .get(&ip)
            .is_some_and(|t| now.duration_since(*t) < self.every)
        {
            return;
        }
        if self.ips.len() >= REMEMBER {
            self.ips.clear();
        }
        self.ips.insert(ip, now);
        self.live.seen(&ip.to_string(), now);
    }

    fn name(&mut self, v: &[u8]) {
        if v.is_empty() {
            return;
        }
        let now = Instant::now();
        if self
            .names
            .get(v)
            .is_some_and(|t| now.duration_since(*t) < self.every)
        {
            return;
        }
        if self.names.len() >= REMEMBER {
            self.names.clear();
        }
        self.names.insert(v.into(), now);
        self.live.seen(&String::from_utf8_lossy(v), now);
    }
}
