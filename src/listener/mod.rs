//! Listeners: bytes in. UDP and unix datagram sockets run on dedicated
//! receive threads ([`udp`], [`unixgram`]); TCP and unix streams run on
//! tokio ([`stream`], [`tcp`], [`unix`]).
//!
//! Every listener hands what it reads to an [`Ingest`], which parses straight
//! out of the receive buffer into the listener's own [`Shard`]; the flusher
//! swaps the shard's maps out at each interval.
//!
//! Owns every socket that takes metrics in and its receive loop. Imports:
//! [`crate::parse`], [`crate::aggregate`] (its shard), [`crate::gate`],
//! [`crate::relay`] (carbon ingest), [`crate::liveness`] and [`crate::events`]
//! (what lines feed), [`crate::stats`]; it never imports the runtime that
//! spawns it.

pub mod carbon;
mod side;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod unix;
pub mod unixgram;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::aggregate::{Refusal, Shard};
use crate::metric::MetricRef;
use crate::parse::{Handler, ParseError, ParseOptions, StatsdParser};
use crate::sink::prometheus::sent::SentKeys;
use crate::sink::SinkMsg;
use crate::stats::listener::{IngestCounter, ListenerStats};
use crate::stats::{incr, Stats};
pub use side::{Side, SideCtx};

/// A shard shared between its one writer (a listener) and the flusher.
pub type SharedShard = Arc<Mutex<Shard>>;

/// The queues of the sinks that want raw packets (repeaters), by sink name.
pub type RawQueues = Arc<[(String, mpsc::Sender<SinkMsg>)]>;

/// Where every listener copies its raw packets: the repeaters' queues. A
/// reload replaces the list; each listener takes the new one at its next
/// packet (one relaxed atomic load per packet tells it whether to).
///
/// A repeater's queue closes, which tells it to deliver what it holds and
/// stop, once no list holds its sender: after a reload removed it, when
/// every listener has moved on to the new list (at its next packet, or when
/// it ends); at shutdown, after the listeners stop and [`RawTap::close`].
#[derive(Clone, Default)]
pub struct RawTap(Arc<TapInner>);

#[derive(Default)]
struct TapInner {
    version: std::sync::atomic::AtomicU64,
    queues: std::sync::RwLock<Option<RawQueues>>,
}

impl RawTap {
    pub fn new(queues: Vec<(String, mpsc::Sender<SinkMsg>)>) -> RawTap {
        let tap = RawTap::default();
        tap.replace(queues);
        tap
    }

    /// The current list, and its version.
    pub fn current(&self) -> (RawQueues, u64) {
        let q = self.0.queues.read().unwrap_or_else(|e| e.into_inner());
        let version = self.0.version.load(std::sync::atomic::Ordering::Acquire);
        (q.clone().unwrap_or_else(|| Arc::from(Vec::new())), version)
    }

    /// Replace the list (a reload).
    pub fn replace(&self, queues: Vec<(String, mpsc::Sender<SinkMsg>)>) {
        let mut q = self.0.queues.write().unwrap_or_else(|e| e.into_inner());
        *q = Some(queues.into());
        self.0
            .version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Drop the list (shutdown, once the listeners stopped).
    pub fn close(&self) {
        self.replace(Vec::new());
    }

    fn version(&self) -> u64 {
        self.0.version.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Parse + aggregate for one listener thread or connection.
pub struct Ingest {
    parser: StatsdParser,
    shard: SharedShard,
    stats: Arc<Stats>,
    raw: RawTap,
    /// The tap's list as of `raw_version`.
    raw_now: RawQueues,
    raw_version: u64,
    dump_messages: bool,
    bad_log: LogLimiter,
    limit_log: LogLimiter,
    /// This ingest's slot in its listener's counters ([`Ingest::counted_in`]).
    counter: Option<IngestCounter>,
    /// Where rewritten keys are noted with how they were sent
    /// ([`Ingest::recording_sent`]).
    sent: Option<Arc<SentKeys>>,
    side: Side,
}

impl Ingest {
    pub fn new(
        opts: &ParseOptions,
        shard: SharedShard,
        stats: Arc<Stats>,
        raw: RawTap,
        dump_messages: bool,
    ) -> Ingest {
        let (raw_now, raw_version) = raw.current();
        Ingest {
            parser: StatsdParser::new(opts.clone()),
            shard,
            stats,
            raw,
            raw_now,
            raw_version,
            dump_messages,
            bad_log: LogLimiter::new(10, Duration::from_secs(10)),
            limit_log: LogLimiter::new(10, Duration::from_secs(10)),
            counter: None,
            sent: None,
            side: Side::default(),
        }
    }

    /// Note in `sent` how each key ingest rewrote was sent, for the
    /// Prometheus exporter's label values (only rewritten keys cost a look).
    pub fn recording_sent(mut self, sent: Option<Arc<SentKeys>>) -> Ingest {
        self.sent = sent;
        self
    }

    /// Also count what this ingest reads in `listener`'s counters (a slot
    /// of its own: no atomic read-modify-write per packet).
    pub fn counted_in(mut self, listener: &Arc<ListenerStats>) -> Ingest {
        self.counter = Some(listener.counter());
        self
    }

    /// One packet: a UDP datagram, or the complete lines of one stream read.
    pub fn packet(&mut self, data: &[u8]) {
        incr(&self.stats.packets_received, 1);
        self.side.packet();
        if self.raw.version() != self.raw_version {
            (self.raw_now, self.raw_version) = self.raw.current();
        }
        if !self.raw_now.is_empty() {
            let copy = Bytes::copy_from_slice(data);
            for (_, tx) in self.raw_now.iter() {
                if tx.try_send(SinkMsg::Raw(copy.clone())).is_err() {
                    incr(&self.stats.raw_dropped, 1);
                }
            }
        }
        if self.dump_messages {
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                tracing::info!(line = %String::from_utf8_lossy(line), "received");
            }
        }
        // Only this listener and the flusher (briefly, to swap maps) ever take
        // this lock. A poisoned lock means a panic mid-insert; the maps are
        // still structurally valid, so keep going rather than lose the shard.
        let mut shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
        let mut handler = ShardHandler {
            shard: &mut shard,
            bad_log: &mut self.bad_log,
            too_many_tags: 0,
            listener: self.counter.as_ref().map(IngestCounter::listener),
            sent: self.sent.as_deref(),
            side: &mut self.side,
            refusals: Refusals {
                limit_log: &mut self.limit_log,
                refused: 0,
                refused_under: Vec::new(),
            },
        };
        let counts = self.parser.parse_packet(data, &mut handler);
        // The shard applies the last values it queued before its lock goes.
        let refusals = &mut handler.refusals;
        handler.shard.drain(|key, r| refusals.refused(key, r));
        let (too_many_tags, refused, refused_under) = (
            handler.too_many_tags,
            handler.refusals.refused,
            std::mem::take(&mut handler.refusals.refused_under),
        );
        drop(shard);
        incr(&self.stats.metrics_received, counts.lines);
        incr(&self.stats.bad_lines_seen, counts.bad);
        // The listener's own (status page): a plain store, no atomic add.
        if let Some(c) = &self.counter {
            c.packet(counts.lines);
        }
        // Counted per packet, not per line: a flood of new keys costs one
        // add per packet here (and one lock per prefix that refused).
        if too_many_tags > 0 {
            incr(&self.stats.too_many_tags, too_many_tags);
        }
        if refused > 0 {
            incr(&self.stats.series_dropped, refused);
            for (prefix, n) in refused_under {
                self.stats.add_series_dropped_under(&prefix, n);
            }
        }
    }
}

struct ShardHandler<'a> {
    shard: &'a mut Shard,
    bad_log: &'a mut LogLimiter,
    too_many_tags: u64,
    /// Where bad lines are counted by reason.
    listener: Option<&'a ListenerStats>,
    /// Where rewritten keys are noted.
    sent: Option<&'a SentKeys>,
    /// Liveness and events, beside the aggregation.
    side: &'a mut Side,
    refusals: Refusals<'a>,
}

/// What a packet's values refused by a series limit come to.
struct Refusals<'a> {
    limit_log: &'a mut LogLimiter,
    /// Values refused, all causes.
    refused: u64,
    /// Of those, per `series_limits` prefix.
    refused_under: Vec<(std::sync::Arc<str>, u64)>,
}

impl Refusals<'_> {
    fn refused(&mut self, key: &[u8], r: Refusal) {
        self.refused += 1;
        if let Some(suppressed) = self.limit_log.allow() {
            tracing::warn!(
                key = %String::from_utf8_lossy(&key[..key.len().min(256)]),
                prefix = r.prefix.as_deref().unwrap_or(""),
                limit = r.limit,
                suppressed,
                "new series dropped: series limit reached (existing series go on)"
            );
        }
        if let Some(p) = r.prefix {
            match self.refused_under.iter_mut().find(|(q, _)| *q == p) {
                Some((_, n)) => *n += 1,
                None => self.refused_under.push((p, 1)),
            }
        }
    }
}

impl Handler for ShardHandler<'_> {
    #[inline]
    fn metric(&mut self, m: MetricRef<'_>) {
        self.side.key(m.key);
        let refusals = &mut self.refusals;
        self.shard.push(&m, |key, r| refusals.refused(key, r));
    }

    fn sent_as(&mut self, key: &[u8], sent: &[u8]) {
        if let Some(t) = self.sent {
            t.record(key, sent);
        }
    }

    fn event(&mut self, e: &crate::parse::event::Event<'_>) {
        self.side.event(e);
    }

    fn service_check(&mut self, c: &crate::parse::event::ServiceCheck<'_>, key: &[u8]) {
        self.side.service_check(c, key);
    }

    fn bad_line(&mut self, line: &[u8], err: ParseError) {
        if err == ParseError::TooManyTags {
            self.too_many_tags += 1;
        }
        if let Some(l) = self.listener {
            l.bad_line(bad_reason_index(&err));
        }
        if let Some(suppressed) = self.bad_log.allow() {
            tracing::warn!(
                line = %String::from_utf8_lossy(&line[..line.len().min(256)]),
                reason = %err,
                suppressed,
                "bad line"
            );
        }
    }
}

pub use crate::log_limit::LogLimiter;

/// The index of `err`'s reason in
/// [`BAD_REASONS`](crate::stats::listener::BAD_REASONS).
pub fn bad_reason_index(err: &ParseError) -> usize {
    match err {
        ParseError::MissingValue => 0,
        ParseError::MissingType => 1,
        ParseError::UnknownType => 2,
        ParseError::BadValue => 3,
        ParseError::NegativeTimer => 4,
        ParseError::BadSampleRate => 5,
        ParseError::EmptyName => 6,
        ParseError::BadField => 7,
        ParseError::BadTimestamp => 8,
        ParseError::BadEvent(_) => 9,
        ParseError::TooManyTags => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::listener::BAD_REASONS;

    /// Each reason's label is its variant's name in snake case.
    #[test]
    fn bad_reasons_name_the_parse_errors() {
        use ParseError::*;
        let all = [
            MissingValue,
            MissingType,
            UnknownType,
            BadValue,
            NegativeTimer,
            BadSampleRate,
            EmptyName,
            BadField,
            BadTimestamp,
            BadEvent(crate::parse::event::EventError::BadHeader),
            TooManyTags,
        ];
        assert_eq!(all.len(), BAD_REASONS.len());
        for e in all {
            let name = format!("{e:?}");
            let name = name.split('(').next().unwrap_or_default();
            let snake: String = name
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let lower = c.to_ascii_lowercase();
                    if c.is_ascii_uppercase() && i > 0 {
                        vec!['_', lower]
                    } else {
                        vec![lower]
                    }
                })
                .collect();
            assert_eq!(BAD_REASONS[bad_reason_index(&e)], snake);
        }
    }
}
