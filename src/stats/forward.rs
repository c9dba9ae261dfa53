//! The forwarding tier's counters: the agent's ([`ForwardStats`],
//! [`FORWARD`]: `statsyard_forward_*`, `forward` in `/api/stats`,
//! `<prefix_stats>.statsyard.forward.*`) and the aggregator's
//! ([`AggregatorStats`], [`AGGREGATOR`]: `statsyard_aggregator_*`). Each
//! aggregator an agent sends to also has the delivery engine's per-output
//! counters, as the sink `forward/<address>` (errors, retries, spool).
//!
//! Imports nothing of the crate outside `stats`.

use std::sync::atomic::AtomicU64;

use super::get;
use super::table::{Kind, Metric};

/// The agent's counters (`[forward]`).
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Series entries handed to the aggregators' queues.
    pub series: AtomicU64,
    /// Messages handed to the aggregators' queues.
    pub messages: AtomicU64,
    /// Their bytes as sent (compressed).
    pub bytes: AtomicU64,
    /// Their bytes before compression.
    pub bytes_raw: AtomicU64,
    /// Intervals forwarded.
    pub intervals: AtomicU64,
    /// Series sent to another aggregator than their own, which was down.
    pub rerouted: AtomicU64,
    /// Series queued for an aggregator that was down (`on_down = "spool"`,
    /// or no other aggregator up): delayed until it is back.
    pub delayed: AtomicU64,
    /// Series dropped: the queue of intervals waiting to be sent was full,
    /// or no aggregator was known.
    pub dropped: AtomicU64,
    /// Aggregators known now.
    pub destinations: AtomicU64,
    /// Of those, up now (their last request succeeded, or none failed yet).
    pub destinations_up: AtomicU64,
    /// How long the last interval took to cut and encode, in microseconds.
    pub encode_micros: AtomicU64,
}

/// The aggregator's counters (`[aggregator]`).
#[derive(Debug, Default)]
pub struct AggregatorStats {
    /// Messages accepted (merged, or recognised as sent twice).
    pub accepted: AtomicU64,
    /// Messages refused: larger than max_message_bytes.
    pub refused_too_large: AtomicU64,
    /// Messages refused: not snappy, not protobuf.
    pub refused_decode: AtomicU64,
    /// Messages refused: another protocol version.
    pub refused_version: AtomicU64,
    /// Messages refused: a field that makes no sense (bad key, interval...).
    pub refused_invalid: AtomicU64,
    /// Messages received twice (a lost answer), merged once.
    pub duplicates: AtomicU64,
    /// Series entries merged.
    pub series: AtomicU64,
    /// Series entries that came after their interval was flushed, merged
    /// into the next flush.
    pub late_series: AtomicU64,
    /// Time spent decoding and merging, in microseconds.
    pub merge_micros: AtomicU64,
    /// Agents heard from in the last three intervals.
    pub agents: AtomicU64,
    /// Intervals flushed as soon as every known agent had sent them.
    pub flushed_early: AtomicU64,
    /// Intervals flushed when the grace ran out.
    pub flushed_on_grace: AtomicU64,
    /// Series waiting in intervals not flushed yet.
    pub pending_series: AtomicU64,
    /// Bytes in the journal now.
    pub journal_bytes: AtomicU64,
    /// Messages replayed from the journal at start.
    pub journal_replayed: AtomicU64,
    /// From an agent's flush to the merge of its last message, for the
    /// last message merged, in milliseconds.
    pub merge_lag_ms: AtomicU64,
}

/// `statsyard_forward_*`, the `forward` object of `/api/stats`.
pub const FORWARD: &[Metric<ForwardStats>] = &[
    Metric::new("series", "series_total", Kind::Counter,
        "Series entries forwarded to aggregators (queued for delivery).",
        |s: &ForwardStats| get(&s.series)).graphite(),
    Metric::new("messages", "messages_total", Kind::Counter,
        "Messages forwarded to aggregators (queued for delivery).",
        |s: &ForwardStats| get(&s.messages)).graphite(),
    Metric::new("bytes", "bytes_total", Kind::Counter,
        "Bytes of forwarded messages as sent (compressed).",
        |s: &ForwardStats| get(&s.bytes)).graphite(),
    Metric::new("bytes_raw", "bytes_raw_total", Kind::Counter,
        "Bytes of forwarded messages before compression.",
        |s: &ForwardStats| get(&s.bytes_raw)).graphite(),
    Metric::new("intervals", "intervals_total", Kind::Counter,
        "Intervals forwarded.",
        |s: &ForwardStats| get(&s.intervals)),
    Metric::new("rerouted", "rerouted_series_total", Kind::Counter,
        "Series sent to the next aggregator because theirs was down (on_down = reroute).",
        |s: &ForwardStats| get(&s.rerouted)).graphite(),
    Metric::new("delayed", "delayed_series_total", Kind::Counter,
        "Series queued for an aggregator that was down, delivered when it is back (on_down = spool, or none other up).",
        |s: &ForwardStats| get(&s.delayed)).graphite(),
    Metric::new("dropped", "dropped_series_total", Kind::Counter,
        "Series dropped: too many intervals waiting to be sent, or no aggregator known.",
        |s: &ForwardStats| get(&s.dropped)).graphite(),
    Metric::new("destinations", "destinations", Kind::Gauge,
        "Aggregators known (listed, or resolved from dns: destinations).",
        |s: &ForwardStats| get(&s.destinations)).graphite(),
    Metric::new("destinations_up", "destinations_up", Kind::Gauge,
        "Aggregators up: their last request succeeded, or none failed yet.",
        |s: &ForwardStats| get(&s.destinations_up)).graphite(),
    Metric::new("encode_micros", "encode_seconds", Kind::Gauge,
        "How long the last interval took to cut into messages and encode.",
        |s: &ForwardStats| get(&s.encode_micros)).scaled(1e-6),
];

/// `statsyard_aggregator_*`, the `aggregator` object of `/api/stats`.
pub const AGGREGATOR: &[Metric<AggregatorStats>] = &[
    Metric::new("accepted", "messages_accepted_total", Kind::Counter,
        "Forwarded messages accepted.",
        |s: &AggregatorStats| get(&s.accepted)).graphite(),
    Metric::new("refused_too_large", "messages_refused_total", Kind::Counter,
        "Forwarded messages refused, by reason.",
        |s: &AggregatorStats| get(&s.refused_too_large)).labelled("reason", "too_large").graphite(),
    Metric::new("refused_decode", "messages_refused_total", Kind::Counter,
        "Forwarded messages refused, by reason.",
        |s: &AggregatorStats| get(&s.refused_decode)).labelled("reason", "decode").graphite(),
    Metric::new("refused_version", "messages_refused_total", Kind::Counter,
        "Forwarded messages refused, by reason.",
        |s: &AggregatorStats| get(&s.refused_version)).labelled("reason", "version").graphite(),
    Metric::new("refused_invalid", "messages_refused_total", Kind::Counter,
        "Forwarded messages refused, by reason.",
        |s: &AggregatorStats| get(&s.refused_invalid)).labelled("reason", "invalid").graphite(),
    Metric::new("duplicates", "duplicate_messages_total", Kind::Counter,
        "Forwarded messages received twice (an answer was lost) and merged once.",
        |s: &AggregatorStats| get(&s.duplicates)).graphite(),
    Metric::new("series", "series_merged_total", Kind::Counter,
        "Forwarded series entries merged.",
        |s: &AggregatorStats| get(&s.series)).graphite(),
    Metric::new("late_series", "late_series_total", Kind::Counter,
        "Forwarded series entries that came after their interval was flushed (merged into the next flush).",
        |s: &AggregatorStats| get(&s.late_series)).graphite(),
    Metric::new("merge_micros", "merge_seconds_total", Kind::Counter,
        "Time spent decoding and merging forwarded messages.",
        |s: &AggregatorStats| get(&s.merge_micros)).scaled(1e-6).graphite(),
    Metric::new("agents", "agents", Kind::Gauge,
        "Agents heard from in the last three intervals.",
        |s: &AggregatorStats| get(&s.agents)).graphite(),
    Metric::new("flushed_early", "intervals_flushed_total", Kind::Counter,
        "Intervals flushed, by why: every known agent had sent it (early), or the grace ran out.",
        |s: &AggregatorStats| get(&s.flushed_early)).labelled("when", "early").graphite(),
    Metric::new("flushed_on_grace", "intervals_flushed_total", Kind::Counter,
        "Intervals flushed, by why: every known agent had sent it (early), or the grace ran out.",
        |s: &AggregatorStats| get(&s.flushed_on_grace)).labelled("when", "grace").graphite(),
    Metric::new("pending_series", "pending_series", Kind::Gauge,
        "Forwarded series entries waiting in intervals not flushed yet.",
        |s: &AggregatorStats| get(&s.pending_series)),
    Metric::new("journal_bytes", "journal_bytes", Kind::Gauge,
        "Bytes in the journal of accepted, not yet flushed messages.",
        |s: &AggregatorStats| get(&s.journal_bytes)).graphite(),
    Metric::new("journal_replayed", "journal_replayed_messages_total", Kind::Counter,
        "Messages replayed from the journal at start.",
        |s: &AggregatorStats| get(&s.journal_replayed)),
    Metric::new("merge_lag_ms", "merge_lag_seconds", Kind::Gauge,
        "From an agent's flush to the merge of its message, for the last message merged.",
        |s: &AggregatorStats| get(&s.merge_lag_ms)).scaled(1e-3),
];
