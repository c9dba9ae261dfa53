//! The aggregator role (`[aggregator]`): agents POST their forwarded state
//! to `/v1/forward` on a listener of its own; it is merged per interval
//! and flushed with what the statsd listeners got.
//!
//! - [`Pending`] holds the intervals not flushed yet, by the start of the
//!   aggregator's interval they belong to, with which agents have sent
//!   their last part of each. The HTTP handler decodes and checks a
//!   message off the lock, then, under it: drops a message it merged
//!   already (an agent that sent again after a lost answer: by agent,
//!   interval and part), journals it, merges it, and asks the flusher for
//!   an early flush when every agent it knows (heard from in the last
//!   three intervals) has sent the interval, from its second whole
//!   interval on (before, it may not have heard from every agent yet).
//! - [`AggregatorSide`] is the flusher's [`crate::flusher::Inflow`]: at the
//!   flush of the interval ending at `E` (at `E + grace`, or earlier when
//!   complete) it takes every interval that ends by `E`; state that comes
//!   for a flushed interval is late and goes into the next flush, counted.
//! - The journal (`journal_dir`): one file per pending interval, each
//!   accepted message appended (length, CRC-32, flags, body) before it is
//!   answered; replayed at start; a file is deleted once its interval was
//!   handed to the outputs. Written without fsync: it survives the
//!   process being killed, not the machine losing power.
//!
//! Refusals are 4xx (the agent gives the message up, counted on both
//! sides); a journal that cannot be written is a 503 (the agent tries again).
//!
//! Imports, besides `forward` itself: `aggregate`, `flusher`, `stats`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use super::proto::{self, Batch, Refusal};
use crate::aggregate::IntervalState;
use crate::flusher::FlusherHandle;
use crate::stats::forward::AggregatorStats;
use crate::stats::incr;

/// Agents heard from in this many intervals are waited for.
const KNOWN_INTERVALS: u64 = 3;

/// Messages already merged are remembered this many intervals back.
const DEDUP_INTERVALS: u64 = 10;

/// When the id of a message for the interval starting at `start` (Unix ms)
/// of `iv` ms may be forgotten. `decode` bounds both; saturating anyway, so
/// that no journal record can make a replay panic.
fn dedup_expiry(start: u64, iv: u64) -> u64 {
    start.saturating_add((DEDUP_INTERVALS + 1).saturating_mul(iv))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The aggregator's pending intervals (see the module doc).
pub struct Pending {
    inner: Mutex<Inner>,
    stats: Arc<AggregatorStats>,
    flusher: FlusherHandle,
    /// `max_message_bytes`, live.
    max_bytes: AtomicUsize,
    timer_exact_samples: usize,
}

struct Inner {
    /// The aggregator's interval, ms.
    iv: u64,
    /// Interval start → its state.
    buckets: BTreeMap<u64, IntervalState>,
    /// Everything ending at or before this was flushed.
    flushed_until: u64,
    /// (agent, agent's interval start, part) → when it may be forgotten.
    seen: HashMap<(String, u64, u32), u64>,
    /// Agent → the start of the last interval it sent.
    agents: HashMap<String, u64>,
    /// Interval start → agents whose last part of it came.
    done: HashMap<u64, HashSet<String>>,
    /// Series entries in `buckets`.
    pending: u64,
    journal: Option<Journal>,
    /// Buckets taken by the flush in progress (their journal files go
    /// once it is handed to the outputs).
    taken: Vec<u64>,
    /// The first bucket that may flush early: the one after the first
    /// whole interval this aggregator listened through (since it started,
    /// or since its interval changed). Agents send every interval, so by
    /// then it has heard from every live agent; before, "every agent it
    /// knows" may be the first one that happened to report.
    warm_from: u64,
}

/// The start of the second whole interval of `iv` ms after `now_ms`.
fn warm_from(now_ms: u64, iv: u64) -> u64 {
    (now_ms / iv + 2) * iv
}

impl Inner {
    fn bucket_of(&self, start: u64) -> u64 {
        start - start % self.iv
    }

    /// Whether every known agent has sent its last part of `bucket`.
    fn complete(&self, bucket: u64) -> bool {
        let since = bucket.saturating_sub(KNOWN_INTERVALS * self.iv);
        let done = self.done.get(&bucket);
        self.agents
            .iter()
            .filter(|(_, last)| **last >= since)
            .all(|(a, _)| done.is_some_and(|d| d.contains(a)))
    }
}

/// The journal: a file per pending interval.
struct Journal {
    dir: PathBuf,
    files: HashMap<u64, std::fs::File>,
    bytes: u64,
}

const FLAG_SNAPPY: u8 = 1;

impl Journal {
    fn path(dir: &Path, bucket: u64) -> PathBuf {
        dir.join(format!("{bucket}.journal"))
    }

    fn append(&mut self, bucket: u64, body: &[u8], snappy: bool) -> std::io::Result<()> {
        if !self.files.contains_key(&bucket) {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Journal::path(&self.dir, bucket))?;
            self.files.insert(bucket, f);
        }
        let f = self.files.get_mut(&bucket).expect("just opened");
        let mut rec = Vec::with_capacity(body.len() + 9);
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        rec.push(if snappy { FLAG_SNAPPY } else { 0 });
        rec.extend_from_slice(body);
        // One write: a record is whole in the file or (killed mid-write)
        // a torn tail that the replay stops at.
        f.write_all(&rec)?;
        self.bytes += rec.len() as u64;
        Ok(())
    }

    fn remove(&mut self, bucket: u64) {
        self.files.remove(&bucket);
        let p = Journal::path(&self.dir, bucket);
        if let Ok(m) = std::fs::metadata(&p) {
            self.bytes = self.bytes.saturating_sub(m.len());
        }
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "cannot delete a flushed journal file");
            }
        }
    }

    /// Every record of every file: (bucket, body, snappy). A torn or
    /// corrupt tail ends its file's replay.
    fn read_all(dir: &Path) -> std::io::Result<Vec<(u64, Vec<u8>, bool)>> {
        let mut out = Vec::new();
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let b = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".journal")?
                    .parse()
                    .ok()?;
                Some((b, p))
            })
            .collect();
        names.sort();
        for (bucket, p) in names {
            let mut data = Vec::new();
            std::fs::File::open(&p)?.read_to_end(&mut data)?;
            let mut at = 0;
            while at + 9 <= data.len() {
                let len =
                    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
                let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
                let flags = data[at + 8];
                let Some(body) = data.get(at + 9..at + 9 + len) else {
                    tracing::warn!(path = %p.display(), "journal: torn record at its end, skipped");
                    break;
                };
                if crc32fast::hash(body) != crc {
                    tracing::warn!(path = %p.display(), "journal: corrupt record, the rest of the file skipped");
                    break;
                }
                out.push((bucket, body.to_vec(), flags & FLAG_SNAPPY != 0));
                at += 9 + len;
            }
        }
        Ok(out)
    }
}

/// What a message came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Merged,
    Duplicate,
}

/// Why a message was not taken.
#[derive(Debug, PartialEq)]
pub enum Rejected {
    /// For good (4xx): the message is wrong.
    Refused(Refusal),
    /// For now (503): the journal cannot be written, or the final flush ran.
    Unavailable(String),
}

impl From<Refusal> for Rejected {
    fn from(r: Refusal) -> Self {
        Rejected::Refused(r)
    }
}

impl Pending {
    /// Empty, for intervals of `iv_ms`; with a journal, what it holds is
    /// replayed first (and kept until flushed).
    pub fn open(
        iv_ms: u64,
        journal_dir: Option<&Path>,
        max_bytes: usize,
        timer_exact_samples: usize,
        stats: Arc<AggregatorStats>,
        flusher: FlusherHandle,
    ) -> std::io::Result<Arc<Pending>> {
        let journal = match journal_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Some(Journal {
                    dir: d.to_path_buf(),
                    files: HashMap::new(),
                    bytes: 0,
                })
            }
            None => {
                tracing::warn!(
                    "[aggregator] runs without journal_dir: if this process is killed, what agents \
                     sent and it acknowledged but has not flushed yet is lost"
                );
                None
            }
        };
        let replay = match journal_dir {
            Some(d) => Journal::read_all(d)?,
            None => Vec::new(),
        };
        let p = Arc::new(Pending {
            inner: Mutex::new(Inner {
                iv: iv_ms.max(1),
                warm_from: warm_from(unix_ms(), iv_ms.max(1)),
                buckets: BTreeMap::new(),
                flushed_until: 0,
                seen: HashMap::new(),
                agents: HashMap::new(),
                done: HashMap::new(),
                pending: 0,
                journal,
                taken: Vec::new(),
            }),
            stats,
            flusher,
            max_bytes: AtomicUsize::new(max_bytes),
            timer_exact_samples,
        });
        let (mut n, mut bytes) = (0u64, 0u64);
        for (bucket, body, snappy) in replay {
            bytes += body.len() as u64 + 9;
            let batch = match proto::decode(&body, snappy, usize::MAX) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "journal: a record that does not decode, skipped");
                    continue;
                }
            };
            let mut st = IntervalState::new(timer_exact_samples);
            let id = (batch.agent.clone(), batch.interval_start_ms, batch.part);
            let expires = dedup_expiry(batch.interval_start_ms, batch.interval_ms.max(iv_ms));
            let Ok(series) = batch.merge_into(&mut st) else {
                continue;
            };
            let mut inner = p.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.seen.insert(id, expires);
            inner.pending += series as u64;
            inner
                .buckets
                .entry(bucket)
                .or_insert_with(|| IntervalState::new(timer_exact_samples))
                .merge(st);
            n += 1;
        }
        {
            let mut inner = p.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(j) = &mut inner.journal {
                j.bytes = bytes;
            }
            p.stats
                .pending_series
                .store(inner.pending, Ordering::Relaxed);
            p.stats.journal_bytes.store(bytes, Ordering::Relaxed);
        }
        if n > 0 {
            incr(&p.stats.journal_replayed, n);
            tracing::info!(
                messages = n,
                "journal replayed: acknowledged state from before the restart will be flushed"
            );
        }
        Ok(p)
    }

    /// New settings from a reload.
    pub fn set(&self, iv_ms: u64, max_bytes: usize) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let iv = iv_ms.max(1);
        if inner.iv != iv {
            inner.iv = iv;
            inner.warm_from = warm_from(unix_ms(), iv);
        }
    }

    /// Take a body in (run off the runtime's threads: it decodes and
    /// merges). `Err` is the answer to give.
    pub fn accept(&self, body: &[u8], snappy: bool) -> Result<Outcome, Rejected> {
        let started = Instant::now();
        let max = self.max_bytes.load(Ordering::Relaxed);
        let refused = |r: Refusal| {
            let c = match &r {
                Refusal::TooLarge(_) => &self.stats.refused_too_large,
                Refusal::Decode(_) => &self.stats.refused_decode,
                Refusal::Version(_) => &self.stats.refused_version,
                Refusal::Invalid(_) => &self.stats.refused_invalid,
            };
            incr(c, 1);
            r
        };
        let batch: Batch = proto::decode(body, snappy, max).map_err(refused)?;
        let now = unix_ms();
        if batch.interval_start_ms > now + 3_600_000 {
            return Err(refused(Refusal::Invalid(format!(
                "interval starts {} s in the future: check the agent's clock",
                (batch.interval_start_ms - now) / 1000
            )))
            .into());
        }
        let (agent, start, part, last, agent_iv, flushed) = (
            batch.agent.clone(),
            batch.interval_start_ms,
            batch.part,
            batch.last,
            batch.interval_ms,
            batch.flushed_unix_ms,
        );
        let mut st = IntervalState::new(self.timer_exact_samples);
        let series = batch.merge_into(&mut st).map_err(refused)? as u64;

        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = (agent.clone(), start, part);
        if inner.seen.contains_key(&id) {
            incr(&self.stats.duplicates, 1);
            incr(&self.stats.accepted, 1);
            return Ok(Outcome::Duplicate);
        }
        if inner.flushed_until == u64::MAX {
            // The final flush has run: nothing more can be flushed.
            return Err(Rejected::Unavailable(
                "the aggregator is shutting down".into(),
            ));
        }
        let mut bucket = inner.bucket_of(start);
        let iv = inner.iv;
        let late = bucket + iv <= inner.flushed_until;
        if late {
            bucket = inner.flushed_until;
            incr(&self.stats.late_series, series);
        }
        if let Some(j) = &mut inner.journal {
            if let Err(e) = j.append(bucket, body, snappy) {
                tracing::error!(error = %e, "cannot write the journal: the message is refused for now (503)");
                return Err(Rejected::Unavailable(format!("journal: {e}")));
            }
            self.stats.journal_bytes.store(j.bytes, Ordering::Relaxed);
        }
        let expires = dedup_expiry(start, agent_iv.max(iv));
        inner.seen.insert(id, expires);
        inner
            .buckets
            .entry(bucket)
            .or_insert_with(|| IntervalState::new(self.timer_exact_samples))
            .merge(st);
        inner.pending += series;
        let last_seen = inner.agents.entry(agent.clone()).or_insert(0);
        *last_seen = (*last_seen).max(start);
        let mut ready = None;
        if last && agent_iv == iv && !late {
            inner.done.entry(bucket).or_default().insert(agent);
            if bucket >= inner.warm_from && inner.complete(bucket) && now >= bucket + iv {
                ready = Some(bucket + iv);
            }
        }
        self.stats
            .pending_series
            .store(inner.pending, Ordering::Relaxed);
        drop(inner);
        incr(&self.stats.accepted, 1);
        incr(&self.stats.series, series);
        incr(
            &self.stats.merge_micros,
            started.elapsed().as_micros() as u64,
        );
        self.stats
            .merge_lag_ms
            .store(unix_ms().saturating_sub(flushed), Ordering::Relaxed);
        if let Some(end) = ready {
            self.flusher.ready(end);
        }
        Ok(Outcome::Merged)
    }
}

/// The flusher's half (see the module doc).
pub struct AggregatorSide(pub Arc<Pending>);

impl crate::flusher::Inflow for AggregatorSide {
    fn take_due(&mut self, end_ms: u64) -> Option<IntervalState> {
        let p = &self.0;
        let mut inner = p.inner.lock().unwrap_or_else(|e| e.into_inner());
        let iv = inner.iv;
        let due: Vec<u64> = inner
            .buckets
            .keys()
            .copied()
            .filter(|b| b.saturating_add(iv) <= end_ms)
            .collect();
        inner.flushed_until = inner.flushed_until.max(end_ms);
        let mut out: Option<IntervalState> = None;
        for b in &due {
            if let Some(st) = inner.buckets.remove(b) {
                match &mut out {
                    Some(o) => o.merge(st),
                    None => out = Some(st),
                }
            }
        }
        inner.pending = inner.buckets.values().map(|s| s.len() as u64).sum();
        p.stats
            .pending_series
            .store(inner.pending, Ordering::Relaxed);
        inner.taken.extend(due);
        out
    }

    fn flushed(&mut self, end_ms: u64, early: bool) {
        let p = &self.0;
        let mut inner = p.inner.lock().unwrap_or_else(|e| e.into_inner());
        let taken = std::mem::take(&mut inner.taken);
        if let Some(j) = &mut inner.journal {
            for b in taken {
                j.remove(b);
            }
            p.stats.journal_bytes.store(j.bytes, Ordering::Relaxed);
        }
        let iv = inner.iv;
        let now = unix_ms();
        inner.seen.retain(|_, expires| *expires > now);
        inner.done.retain(|b, _| b.saturating_add(iv) > end_ms);
        let since = end_ms.saturating_sub((KNOWN_INTERVALS + 1) * iv);
        inner.agents.retain(|_, last| *last >= since);
        p.stats
            .agents
            .store(inner.agents.len() as u64, Ordering::Relaxed);
        drop(inner);
        incr(
            if early {
                &p.stats.flushed_early
            } else {
                &p.stats.flushed_on_grace
            },
            1,
        );
    }
}

/// The HTTP route agents POST to.
pub fn router(pending: Arc<Pending>) -> Router {
    Router::new()
        .route(proto::PATH, post(forward))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(pending)
}

async fn forward(
    State(p): State<Arc<Pending>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, String) {
    let snappy = match headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.as_bytes())
    {
        None | Some(b"identity") => false,
        Some(b"snappy") => true,
        Some(other) => {
            incr(&p.stats.refused_decode, 1);
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {:?}: snappy or none",
                    String::from_utf8_lossy(other)
                ),
            );
        }
    };
    let max = p.max_bytes.load(Ordering::Relaxed);
    let bytes: Bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            incr(&p.stats.refused_too_large, 1);
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("message larger than {max} bytes"),
            );
        }
    };
    let p2 = p.clone();
    let r = tokio::task::spawn_blocking(move || p2.accept(&bytes, snappy)).await;
    match r {
        Ok(Ok(Outcome::Merged)) => (StatusCode::OK, "merged\n".into()),
        Ok(Ok(Outcome::Duplicate)) => (StatusCode::OK, "already merged\n".into()),
        Ok(Err(Rejected::Refused(Refusal::TooLarge(n)))) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("message larger than {n} bytes"),
        ),
        Ok(Err(Rejected::Refused(r))) => (StatusCode::BAD_REQUEST, r.to_string()),
        Ok(Err(Rejected::Unavailable(why))) => (StatusCode::SERVICE_UNAVAILABLE, why),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "merging failed".into()),
    }
}
