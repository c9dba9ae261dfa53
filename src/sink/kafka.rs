//! kafka output: every flush as Kafka messages, one per series (or per
//! Graphite line), through librdkafka's producer (rdkafka).
//!
//! Formats: `graphite` (one plaintext line, `name value timestamp\n`, per
//! message, keyed by the Graphite name), `influx` (one line protocol line
//! per series, the influxdb output's schema) and `json` (one object per
//! series, the console sink's JSON). `influx` and `json` messages are keyed
//! by the series key (`name;k=v`): a series always lands in the same
//! partition, so its points stay in order.
//!
//! Events (DogStatsD's, and statsyard's own when a source goes dark or comes
//! back) are messages too, as they arrive: with `json`, the event's object
//! (`"type":"event"`, as `GET /api/events` gives it); with `influx`, a point
//! of the `events` measurement (the influxdb output's). `graphite` has no
//! form for them. An event's key is its aggregation key, or its title
//! without one, so that related events stay in order in one partition.
//!
//! Delivery: the producer has its own bounded queue
//! (`queue.buffering.max.messages`/`kbytes`), batching, compression,
//! retries and acks. The output never blocks on it: what the producer
//! cannot take (its queue is full while the brokers are down or slow) goes
//! to the disk spool with `spool_dir` (or is dropped and counted), and so
//! does what it could not deliver in time (`message.timeout.ms`) or still
//! holds at the shutdown deadline. While the spool holds anything, new
//! flushes go behind it, and it is replayed into the producer, oldest
//! first, as its queue has room, also after a restart. Messages the
//! brokers refuse for good (too large, not authorized) are counted as
//! refused. Counters: `lines_sent` (messages acknowledged), `bytes_sent`
//! (their payload), `errors` (failed deliveries), `refused`, `dropped`
//! (messages), `buffered_bytes` (payload in the producer's queue).
//!
//! Imports, besides `sink` itself: `check`, `deliver`, `events`, `flush`,
//! `log_limit`, `spool`, `stats`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::influxdb::{for_each_series, push_event_line, push_line};
use super::{
    keys_of, BoxFuture, BuildCx, Built, Sink, SinkConfig, SinkError, SinkKind, SinkMsg, ValidateCx,
};
use crate::check::{check_address, check_nonzero, Bad};
use crate::flush::naming::{for_each_graphite_line, Naming};
use crate::flush::FlushBatch;
use crate::log_limit::LogLimiter;
use crate::spool::{Record, SpoolConfig, SpoolHandle};
use crate::stats::{incr, SinkStats};

/// `[[sink]] type = "kafka"`.
pub struct Kind;

/// The kafka output's table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    /// Bootstrap brokers, `["host:port", ...]`.
    brokers: Option<Vec<String>>,
    /// The topic every message goes to.
    topic: Option<String>,
    /// `graphite`, `influx` or `json`.
    format: Option<String>,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd` (librdkafka's
    /// `compression.codec`).
    compression: Option<String>,
    /// Acknowledgements the leader waits for: `all`, `1` or `0`
    /// (librdkafka's `acks`).
    acks: Option<String>,
    /// Messages the producer's queue holds at most
    /// (`queue.buffering.max.messages`).
    queue_messages: Option<usize>,
    /// Bytes the producer's queue holds at most
    /// (`queue.buffering.max.kbytes`, in bytes here).
    queue_bytes: Option<usize>,
    /// How long the producer tries to deliver a message
    /// (`message.timeout.ms`); then it goes to the spool.
    #[serde(default, with = "humantime_serde::option")]
    message_timeout: Option<Duration>,
    /// Any other librdkafka producer property, passed as it is:
    /// `{ "security.protocol" = "sasl_ssl", "sasl.mechanism" = "PLAIN", ... }`.
    options: Option<BTreeMap<String, String>>,
    /// Directory of the disk spool (relative to the config file's
    /// directory); the output uses its own subdirectory, named after it.
    /// Unset: no spool.
    spool_dir: Option<String>,
    /// Bytes the spool keeps at most (1 GiB).
    spool_bytes: Option<u64>,
}

const DEFAULT_QUEUE_MESSAGES: usize = 100_000;
const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes of messages packed into one spool record at most.
const RECORD_BYTES: usize = 1 << 20;

impl SinkKind for Kind {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn keys(&self) -> Vec<String> {
        keys_of::<RawKafka>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let raw: RawKafka = cx.table(table)?;
        let brokers = raw.brokers.unwrap_or_default();
        if brokers.is_empty() {
            return Err(cx.bad(
                "brokers",
                "a kafka output needs `brokers = [\"host:port\", ...]`",
            ));
        }
        for b in &brokers {
            check_address(b).map_err(|r| cx.bad("brokers", r))?;
        }
        let topic = match raw.topic {
            Some(t) if !t.is_empty() => t,
            _ => return Err(cx.bad("topic", "a kafka output needs `topic`")),
        };
        let format = match raw.format.as_deref() {
            None | Some("graphite") => KafkaFormat::Graphite,
            Some("influx") => KafkaFormat::Influx,
            Some("json") => KafkaFormat::Json,
            Some(f) => {
                return Err(cx.bad(
                    "format",
                    format!("{f:?}: use \"graphite\", \"influx\" or \"json\""),
                ))
            }
        };
        let compression = raw.compression.unwrap_or_else(|| "none".into());
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
            return Err(cx.bad(
                "compression",
                format!("{compression:?}: use none, gzip, snappy, lz4 or zstd"),
            ));
        }
        let acks = raw.acks.unwrap_or_else(|| "all".into());
        if !["all", "-1", "0", "1"].contains(&acks.as_str()) {
            return Err(cx.bad("acks", format!("{acks:?}: use \"all\", \"1\" or \"0\"")));
        }
        let queue_messages = raw.queue_messages.unwrap_or(DEFAULT_QUEUE_MESSAGES);
        if queue_messages == 0 {
            return Err(cx.bad("queue_messages", "must be at least 1"));
        }
        let queue_bytes = raw.queue_bytes.unwrap_or(DEFAULT_QUEUE_BYTES);
        if queue_bytes < 1024 {
            return Err(cx.bad("queue_bytes", "must be at least 1024"));
        }
        let message_timeout = raw.message_timeout.unwrap_or(DEFAULT_MESSAGE_TIMEOUT);
        check_nonzero(message_timeout).map_err(|r| cx.bad("message_timeout", r))?;
        let mut client = BTreeMap::new();
        let mut set = |k: &str, v: String| client.insert(k.to_string(), v);
        set("bootstrap.servers", brokers.join(","));
        set("compression.codec", compression);
        set("acks", acks);
        set("queue.buffering.max.messages", queue_messages.to_string());
        set(
            "queue.buffering.max.kbytes",
            (queue_bytes / 1024).to_string(),
        );
        set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        );
        for (k, v) in raw.options.unwrap_or_default() {
            client.insert(k, v);
        }
        // librdkafka checks every property's name and value.
        let mut check = ClientConfig::new();
        for (k, v) in &client {
            check.set(k, v);
        }
        check
            .create_native_config()
            .map_err(|e| cx.bad("options", e.to_string()))?;
        Ok(Arc::new(KafkaConfig {
            topic,
            format,
            client,
            queue_messages,
            spool: cx.spool(raw.spool_dir.as_deref(), raw.spool_bytes)?,
        }))
    }
}

/// What a message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    Graphite,
    Influx,
    Json,
}

/// kafka output settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    pub topic: String,
    pub format: KafkaFormat,
    /// Every librdkafka producer property.
    pub client: BTreeMap<String, String>,
    pub queue_messages: usize,
    pub spool: Option<SpoolConfig>,
}

impl SinkConfig for KafkaConfig {
    fn uses_naming(&self) -> bool {
        self.format == KafkaFormat::Graphite
    }

    /// Events have a message form in `json` and `influx`, none in `graphite`.
    fn takes_events(&self) -> bool {
        self.format != KafkaFormat::Graphite
    }

    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        let ctx = Ctx {
            stats: cx.stats.clone(),
            failed: Mutex::new(Vec::new()),
            queued_bytes: AtomicI64::new(0),
            refusals: Mutex::new(LogLimiter::new(1, Duration::from_secs(10))),
            logs: Mutex::new(LogLimiter::new(1, Duration::from_secs(10))),
            room: tokio::sync::Notify::new(),
        };
        let mut config = ClientConfig::new();
        for (k, v) in &self.client {
            config.set(k, v);
        }
        let producer: ThreadedProducer<Ctx> =
            config
                .create_with_context(ctx)
                .map_err(|e| SinkError::Other {
                    sink: cx.name.clone(),
                    reason: e.to_string(),
                })?;
        Ok(Built::sink(KafkaSink {
            name: cx.name.clone(),
            config: self.clone(),
            naming: cx.naming.clone(),
            producer: Arc::new(producer),
            stats: cx.stats.clone(),
            shutdown_timeout: cx.shutdown_timeout,
        }))
    }
}

/// A message: key and payload.
type Msg = (Vec<u8>, Vec<u8>);

/// The producer's callbacks: counts deliveries, keeps what failed for the
/// spool.
struct Ctx {
    stats: Arc<SinkStats>,
    /// Messages that could not be delivered (timed out, purged at the
    /// shutdown): spooled again by the task.
    failed: Mutex<Vec<Msg>>,
    /// Payload bytes in the producer's queue.
    queued_bytes: AtomicI64,
    refusals: Mutex<LogLimiter>,
    /// librdkafka's warnings and errors.
    logs: Mutex<LogLimiter>,
    /// Told at every delivery report: the producer's queue has room again,
    /// so a spool being replayed goes on at once, not at the next tick.
    room: tokio::sync::Notify,
}

impl Ctx {
    /// The messages that failed since the last call.
    fn take_failed(&self) -> Vec<Msg> {
        std::mem::take(&mut *self.failed.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// librdkafka's own logs and errors, into `tracing`: warnings and errors
/// (a broker that is down is one per reconnect attempt) at most once per
/// 10 s, the rest at debug.
impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) > (RDKafkaLogLevel::Warning as i32) {
            tracing::debug!(sink = %self.stats.name, facility = fac, "librdkafka: {message}");
            return;
        }
        let allowed = self.logs.lock().unwrap_or_else(|e| e.into_inner()).allow();
        if let Some(suppressed) = allowed {
            tracing::warn!(sink = %self.stats.name, facility = fac, suppressed, "librdkafka: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let allowed = self.logs.lock().unwrap_or_else(|e| e.into_inner()).allow();
        if let Some(suppressed) = allowed {
            tracing::warn!(sink = %self.stats.name, %error, suppressed, "librdkafka: {reason}");
        }
    }
}

/// Errors about the message itself, or a topic the cluster does not have:
/// sending it again cannot help. Everything else (a timeout while brokers
/// are down, a purge at shutdown) is spooled and sent again.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::UnknownTopic
            | C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::InvalidTopic
            | C::InvalidRequiredAcks
    )
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let (m, ok) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e)),
        };
        let len = m.payload_len() as i64;
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        self.room.notify_one();
        let Some(e) = ok else {
            incr(&self.stats.lines_sent, 1);
            incr(&self.stats.bytes_sent, len as u64);
            self.stats.delivered();
            return;
        };
        incr(&self.stats.errors, 1);
        self.stats.failed(format!("delivery failed: {e}"));
        match e.rdkafka_error_code() {
            Some(code) if refused_for_good(code) => {
                incr(&self.stats.refused, 1);
                let allowed = self
                    .refusals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .allow();
                if let Some(suppressed) = allowed {
                    tracing::error!(
                        sink = %self.stats.name,
                        error = %e,
                        suppressed,
                        "the brokers refused a message; dropped"
                    );
                }
            }
            _ => {
                let key = m.key().unwrap_or_default().to_vec();
                let payload = m.payload().unwrap_or_default().to_vec();
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((key, payload));
            }
        }
    }
}

/// The kafka output.
pub struct KafkaSink {
    name: String,
    config: KafkaConfig,
    naming: Naming,
    producer: Arc<ThreadedProducer<Ctx>>,
    stats: Arc<SinkStats>,
    shutdown_timeout: Duration,
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        Box::pin(run(*self, rx))
    }
}

/// The task's state.
struct Out {
    s: KafkaSink,
    spool: Option<SpoolHandle>,
    /// Spool records being replayed: the record and how far into it.
    replay: VecDeque<(Record, usize)>,
    fail_log: LogLimiter,
}

async fn run(s: KafkaSink, mut rx: mpsc::Receiver<SinkMsg>) {
    let spool = match &s.config.spool {
        None => None,
        Some(cfg) => {
            match SpoolHandle::open(
                cfg.clone(),
                s.stats.spool.clone(),
                s.shutdown_timeout + Duration::from_secs(2),
            )
            .await
            {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!(sink = %s.name, error = %e, "cannot open the spool; running without");
                    None
                }
            }
        }
    };
    let mut o = Out {
        s,
        spool,
        replay: VecDeque::new(),
        fail_log: LogLimiter::new(1, Duration::from_secs(10)),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(SinkMsg::Flush(batch)) => {
                    let msgs = encode(&batch, o.s.config.format, &o.s.naming);
                    o.send(msgs).await;
                }
                Some(SinkMsg::Event(e)) => {
                    if let Some(m) = encode_event(&e, o.s.config.format) {
                        o.send(vec![m]).await;
                    }
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => o.upkeep().await,
            // Replaying: go on as soon as deliveries make room.
            _ = o.s.producer.context().room.notified(), if o.behind() => o.upkeep().await,
        }
    }
    o.shutdown().await;
}

impl Out {
    /// Whether older messages wait in the spool: new ones go behind them.
    fn behind(&self) -> bool {
        !self.replay.is_empty() || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// A flush's messages: to the producer while it takes them and nothing
    /// older waits, the rest to the spool.
    async fn send(&mut self, msgs: Vec<Msg>) {
        let mut at = 0;
        if !self.behind() {
            while at < msgs.len() {
                let (k, p) = &msgs[at];
                if produce(&self.s, k, p).is_err() {
                    break;
                }
                at += 1;
                if at % 10_000 == 0 {
                    // A million-series flush must not hold a runtime worker.
                    tokio::task::yield_now().await;
                }
            }
        }
        self.set_aside(&msgs[at..]).await;
    }

    /// Spool `msgs`, or drop and count them without a spool.
    async fn set_aside(&mut self, msgs: &[Msg]) {
        if msgs.is_empty() {
            return;
        }
        let records = pack(msgs);
        let lost = match &mut self.spool {
            Some(spool) => match spool.append(records).await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(sink = %self.s.name, error = %e, "spool write failed");
                    msgs.len()
                }
            },
            None => msgs.len(),
        };
        if lost > 0 {
            incr(&self.s.stats.dropped, lost as u64);
            if let Some(suppressed) = self.fail_log.allow() {
                tracing::warn!(
                    sink = %self.s.name,
                    messages = lost,
                    suppressed,
                    "the producer's queue is full (brokers down or slow); messages dropped"
                );
            }
        }
    }

    /// Every 100 ms: spool what failed, replay the spool as the producer has
    /// room, report the queue.
    async fn upkeep(&mut self) {
        let failed = self.s.producer.context().take_failed();
        self.set_aside(&failed).await;
        self.replay().await;
        let queued = self
            .s
            .producer
            .context()
            .queued_bytes
            .load(Ordering::Relaxed);
        self.s
            .stats
            .buffered_bytes
            .store(queued.max(0) as u64, Ordering::Relaxed);
    }

    /// Feed spooled messages to the producer while its queue is less than
    /// half full; acknowledge each record once all of it is handed over.
    async fn replay(&mut self) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        let room = |p: &ThreadedProducer<Ctx>, limit: usize| {
            (p.in_flight_count().max(0) as usize) < limit / 2
        };
        while room(&self.s.producer, self.s.config.queue_messages) {
            if self.replay.is_empty() {
                if !spool.has_unread() {
                    return;
                }
                self.replay = spool
                    .read(RECORD_BYTES)
                    .await
                    .into_iter()
                    .map(|r| (r, 0))
                    .collect();
                if self.replay.is_empty() {
                    return;
                }
            }
            let Some((rec, at)) = self.replay.front_mut() else {
                return;
            };
            let mut data = rec.data.slice(*at..);
            let mut full = false;
            while let Some((key, payload)) = unpack_one(&mut data) {
                if produce(&self.s, &key, &payload).is_err() {
                    full = true;
                    break;
                }
                *at = rec.data.len() - data.len();
            }
            if full {
                return;
            }
            if let Some((rec, _)) = self.replay.pop_front() {
                spool.ack(vec![(rec.pos, rec.data.len() as u64)]).await;
            }
            tokio::task::yield_now().await;
        }
    }

    /// The queue closed: replay the spool while the brokers take it, let
    /// the producer deliver within the deadline, and spool (or drop) what
    /// is left.
    async fn shutdown(mut self) {
        let deadline = Instant::now() + self.s.shutdown_timeout;
        let half = Instant::now() + self.s.shutdown_timeout / 2;
        while self.behind() && Instant::now() < half {
            self.upkeep().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let p = self.s.producer.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::task::spawn_blocking(move || p.flush(left)).await;
        if self.s.producer.in_flight_count() > 0 {
            // Undelivered: purged, which hands each back to the delivery
            // callback (as failed), then spooled or dropped below.
            self.s
                .producer
                .purge(PurgeConfig::default().queue().inflight());
            let p = self.s.producer.clone();
            let _ = tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(1))).await;
        }
        let failed = self.s.producer.context().take_failed();
        if !failed.is_empty() {
            tracing::warn!(
                sink = %self.s.name,
                messages = failed.len(),
                spooled = self.spool.is_some(),
                "shutdown deadline passed with messages undelivered"
            );
        }
        self.set_aside(&failed).await;
        // Records being replayed are not acknowledged: they stay spooled.
        self.replay.clear();
        if let Some(spool) = self.spool.take() {
            spool.close().await;
        }
        self.s.stats.buffered_bytes.store(0, Ordering::Relaxed);
        let p = self.s.producer;
        let _ = tokio::task::spawn_blocking(move || drop(p)).await;
    }
}

/// Hand one message to the producer; `Err` when its queue is full (the
/// message is then the caller's). A message it refuses otherwise is counted
/// as refused.
fn produce(s: &KafkaSink, key: &[u8], payload: &[u8]) -> Result<(), ()> {
    let rec = BaseRecord::to(&s.config.topic).key(key).payload(payload);
    let ctx = s.producer.context();
    match s.producer.send(rec) {
        Ok(()) => {
            ctx.queued_bytes
                .fetch_add(payload.len() as i64, Ordering::Relaxed);
            Ok(())
        }
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(()),
        Err((e, _)) => {
            incr(&s.stats.refused, 1);
            let allowed = ctx
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .allow();
            if let Some(suppressed) = allowed {
                tracing::error!(sink = %s.name, error = %e, suppressed, "message refused; dropped");
            }
            Ok(())
        }
    }
}

/// The batch as messages in `format`.
pub fn encode(batch: &FlushBatch, format: KafkaFormat, naming: &Naming) -> Vec<Msg> {
    let mut msgs = Vec::with_capacity(batch.num_stats());
    match format {
        KafkaFormat::Graphite => {
            let ts = batch.timestamp.to_string();
            for_each_graphite_line(batch, naming, &mut |name, v| {
                let mut line = Vec::with_capacity(name.len() + 24);
                crate::deliver::carbon::push_line(&mut line, name.as_bytes(), v, ts.as_bytes());
                msgs.push((name.as_bytes().to_vec(), line));
            });
        }
        KafkaFormat::Influx => {
            let mut ts = batch.timestamp.to_string().into_bytes();
            ts.push(b'\n');
            for_each_series(batch, &mut |s| {
                let mut line = Vec::new();
                if push_line(&mut line, s, &ts) {
                    msgs.push((s.key.as_bytes().to_vec(), line));
                }
            });
        }
        KafkaFormat::Json => {
            // The console's objects, one per line, in the batch's order.
            let mut out = Vec::new();
            super::console::render_json(batch, &mut out);
            let keys = batch
                .counters
                .iter()
                .map(|c| &c.key)
                .chain(batch.timers.iter().map(|t| &t.key))
                .chain(batch.gauges.iter().map(|g| &g.key))
                .chain(batch.sets.iter().map(|s| &s.key));
            for (key, obj) in keys.zip(out.split(|&b| b == b'\n')) {
                msgs.push((key.as_bytes().to_vec(), obj.to_vec()));
            }
        }
    }
    msgs
}

/// An event as a message in `format`; `None` for `graphite`.
pub fn encode_event(e: &crate::events::Event, format: KafkaFormat) -> Option<Msg> {
    let key = e.aggregation_key.as_deref().unwrap_or(&e.title);
    let payload = match format {
        KafkaFormat::Graphite => return None,
        KafkaFormat::Json => e.to_json().to_string().into_bytes(),
        KafkaFormat::Influx => {
            let mut line = Vec::new();
            push_event_line(&mut line, e, e.timestamp.max(0) as u64);
            line
        }
    };
    Some((key.as_bytes().to_vec(), payload))
}

/// Messages into spool records of about [`RECORD_BYTES`]: each message a
/// u32 key length, the key, a u32 payload length, the payload.
fn pack(msgs: &[Msg]) -> Vec<(Bytes, u64)> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut n = 0u64;
    for (k, p) in msgs {
        buf.put_u32(k.len() as u32);
        buf.put_slice(k);
        buf.put_u32(p.len() as u32);
        buf.put_slice(p);
        n += 1;
        if buf.len() >= RECORD_BYTES {
            out.push((buf.split().freeze(), n));
            n = 0;
        }
    }
    if n > 0 {
        out.push((buf.freeze(), n));
    }
    out
}

/// The next message of a record; `None` at its end (or a bad length).
fn unpack_one(b: &mut Bytes) -> Option<(Bytes, Bytes)> {
    let field = |b: &mut Bytes| {
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        (b.remaining() >= n).then(|| b.split_to(n))
    };
    let k = field(b)?;
    let p = field(b)?;
    Some((k, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::{CounterOut, GaugeOut};
    use crate::metric::MetricKey;

    fn batch() -> FlushBatch {
        FlushBatch {
            timestamp: 1_700_000_000,
            counters: vec![CounterOut {
                key: MetricKey::new(b"hits;env=prod"),
                value: 5.0,
                rate: 0.5,
            }],
            gauges: vec![GaugeOut {
                key: MetricKey::new(b"temp"),
                value: 21.5,
            }],
            ..FlushBatch::default()
        }
    }

    fn text(msgs: &[Msg]) -> Vec<(String, String)> {
        msgs.iter()
            .map(|(k, p)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(p).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn one_message_per_series_keyed_by_it() {
        let b = batch();
        let influx = text(&encode(&b, KafkaFormat::Influx, &Naming::default()));
        assert_eq!(
            influx,
            [
                (
                    "hits;env=prod".to_string(),
                    "hits,env=prod,metric_type=counter value=5,rate=0.5 1700000000\n".to_string()
                ),
                (
                    "temp".to_string(),
                    "temp,metric_type=gauge value=21.5 1700000000\n".to_string()
                ),
            ]
        );
        let json = text(&encode(&b, KafkaFormat::Json, &Naming::default()));
        assert_eq!(json.len(), 2);
        assert_eq!(json[0].0, "hits;env=prod");
        let v: serde_json::Value = serde_json::from_str(&json[0].1).unwrap();
        assert_eq!(v["name"], "hits");
        assert_eq!(v["type"], "counter");
        assert_eq!(v["tags"][0], "env=prod");
        assert_eq!(v["value"], 5);
        assert_eq!(v["timestamp"], 1_700_000_000);
        let graphite = text(&encode(&b, KafkaFormat::Graphite, &Naming::default()));
        assert_eq!(
            graphite[0],
            (
                "stats.hits;env=prod".to_string(),
                "stats.hits;env=prod 0.5 1700000000\n".to_string()
            )
        );
        assert!(graphite.iter().any(|(k, _)| k == "stats.gauges.temp"));
    }

    #[test]
    fn spool_records_round_trip() {
        let msgs: Vec<Msg> = (0..5)
            .map(|i| (format!("k{i}").into_bytes(), vec![b'x'; i * 100]))
            .collect();
        let records = pack(&msgs);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].1, 5);
        let mut data = records[0].0.clone();
        let mut back = Vec::new();
        while let Some((k, p)) = unpack_one(&mut data) {
            back.push((k.to_vec(), p.to_vec()));
        }
        assert_eq!(back, msgs);
    }
}
