//! The HTTP engine: request bodies POSTed to one URL, in order, with the
//! stream engine's contract (see [`super`]): a bounded memory buffer
//! (oldest dropped, counted), the disk spool behind it, retries with
//! backoff, delivery within a deadline at shutdown. It is the delivery half
//! of batched HTTP outputs (InfluxDB's `/api/v2/write`, Prometheus remote
//! write): the output encodes its messages into [`Body`]s with an
//! [`Encoder`] and runs [`HttpOutput::run`] on its queue.
//!
//! One request is in flight at a time, so bodies arrive in the order they
//! were encoded (a spooled body before newer ones). What the answer means:
//!
//! - 2xx: delivered.
//! - 429 and 5xx, and network errors (refused connection, reset, timeout):
//!   the same body is sent again after a wait: the answer's `Retry-After`
//!   (seconds or an HTTP date, up to [`RETRY_AFTER_MAX`]) or else the
//!   backoff (`backoff_min` doubling to `backoff_max`, with jitter so that
//!   many senders do not come back at once). A body that got a 5xx on
//!   `max_retries + 1` tries is given up and counted as refused: a batch
//!   the store cannot take must not block the ones behind it forever. A
//!   429 or a network error is about the store, not the batch: it is
//!   retried for as long as it takes, while the buffer and the spool hold
//!   what comes meanwhile.
//! - Any other status (4xx, and 3xx: redirects are not followed, since a
//!   POST would not survive them): refused for good, counted, and the
//!   reason the store gave (the start of the answer's body) logged at a
//!   limited rate.
//!
//! Delivery is at least once: a body whose answer was lost (a timeout
//! after the store took it) is sent again.
//!
//! Client: `reqwest` with rustls (ring) and the system's CA store, HTTP/1.1,
//! connection reuse, request timeouts and proxies from the environment
//! (`HTTPS_PROXY`...) built in, no OpenSSL to link. hyper-util's client
//! (already in the tree under axum) has no TLS of its own: InfluxDB Cloud and
//! hosted remote-write endpoints are HTTPS-only, and wiring rustls into it by
//! hand is what reqwest already does.
//!
//! Counters ([`SinkStats`]): `lines_sent` (points delivered), `bytes_sent`
//! (bodies delivered), `errors` (failed tries), `retries` (bodies sent again),
//! `refused` (points given up because the store refused them), `dropped`
//! (bodies dropped at the memory bound without a spool, or at shutdown),
//! `buffered_bytes`, and the spool's own.
//!
//! Imports, besides `deliver` itself: `log_limit`, `spool`, `stats`, `tls`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backoff::{retry_due, Backoff};
use super::feed::report_buffered;
use super::outbox::Entry;
use super::store::{Store, Tag};
use super::warnings::FailLog;
use super::warnings::Label;
use crate::log_limit::LogLimiter;
use crate::spool::SpoolConfig;
use crate::stats::{incr, SinkStats};
use crate::tls::TlsClient;

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);

/// Bytes of an answer's body read at most (the reason a store gives for a
/// refusal is at its start).
const ANSWER_BYTES: usize = 64 * 1024;

/// Bytes of a refusal's reason logged at most.
const REASON_BYTES: usize = 512;

/// How an output authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic` (InfluxDB 1.x, most remote-write receivers).
    Basic { user: String, password: String },
    /// `Authorization: Bearer` (InfluxDB 2.x tokens use `Token`: give that
    /// as a header instead).
    Bearer(String),
}

// Credentials stay out of logs and debug output.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
            Auth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// Where and how an HTTP output delivers.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The output's name, for logs.
    pub sink: String,
    /// Where bodies are POSTed (`http://` or `https://`).
    pub url: String,
    pub auth: Option<Auth>,
    /// Extra headers on every request (`X-Prometheus-Remote-Write-Version`,
    /// InfluxDB's `Authorization: Token ...`).
    pub headers: Vec<(String, String)>,
    /// Bytes of bodies held in memory while the store is slow or down; past
    /// this the oldest are spooled or dropped.
    pub buffer_bytes: usize,
    pub connect_timeout: Duration,
    /// How long one request (sending the body, reading the answer) may take.
    pub request_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Tries after the first for a body answered with a 5xx, before it is
    /// given up (counted as refused).
    pub max_retries: u32,
    /// How long delivery may go on once the queue has closed.
    pub shutdown_timeout: Duration,
    /// Where what overflows `buffer_bytes` goes; `None`: it is dropped.
    pub spool: Option<SpoolConfig>,
    /// TLS for an `https://` url: a private CA, a client certificate,
    /// `server_name` ([`tls_target`]); `None`: the system's trusted CAs.
    pub tls: Option<TlsClient>,
}

/// Where requests go with `tls`: with `server_name` and an IP address in
/// `url`, the url carries the name (checked in the certificate, sent as SNI
/// and Host) and the name is pinned to that address. `tls` needs `https`;
/// `server_name` in a url with another host name is refused, as nothing
/// could check it. The HTTP outputs and the forwarding agent share this.
pub fn tls_target(
    url: &reqwest::Url,
    tls: Option<&TlsClient>,
) -> Result<(reqwest::Url, Option<(String, std::net::SocketAddr)>), String> {
    let Some(t) = tls else {
        return Ok((url.clone(), None));
    };
    if url.scheme() != "https" {
        return Err("tls needs an https:// url".into());
    }
    let Some(name) = &t.server_name else {
        return Ok((url.clone(), None));
    };
    let ip: Option<std::net::IpAddr> = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse().ok());
    match ip {
        Some(ip) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let mut named = url.clone();
            named
                .set_host(Some(name))
                .map_err(|e| format!("tls server_name {name:?}: {e}"))?;
            Ok((
                named,
                Some((name.clone(), std::net::SocketAddr::new(ip, port))),
            ))
        }
        None if url.host_str() == Some(name.as_str()) => Ok((url.clone(), None)),
        None => Err(format!(
            "tls server_name differs from the host name in the url ({name:?}): put the \
             certificate's name in the url (server_name is for a url with an IP address)"
        )),
    }
}

/// Why an HTTP output cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL does not parse, or is not `http`/`https`.
    #[error("output {sink}: bad URL {url:?}: {reason}")]
    BadUrl {
        sink: String,
        url: String,
        reason: String,
    },
    /// An extra header's name or value is not valid HTTP.
    #[error("output {sink}: bad header {name:?}")]
    BadHeader { sink: String, name: String },
    /// The client could not be built (TLS setup).
    #[error("output {sink}: HTTP client: {source}")]
    Client {
        sink: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One request's body, as an [`Encoder`] makes it.
#[derive(Debug, Clone)]
pub struct Body {
    pub data: Bytes,
    /// `Content-Type` (`text/plain; charset=utf-8`, `application/x-protobuf`).
    pub content_type: HeaderValue,
    /// `Content-Encoding` (`gzip`, `snappy`), if the body is compressed.
    pub content_encoding: Option<HeaderValue>,
    /// Points the body carries, for the counters.
    pub points: u64,
}

/// What an HTTP output turns its queue messages into.
pub trait Encoder: Send + 'static {
    type Msg: Send + 'static;
    /// Append the request bodies for `msg` to `out`, in order (none to skip it).
    fn encode(&mut self, msg: Self::Msg, out: &mut Vec<Body>);

    /// Whether `msg` is a flush, counted in `flushes_sent` once the last of
    /// its bodies is delivered (an event, say, is not).
    fn is_flush(&self, _msg: &Self::Msg) -> bool {
        true
    }
}

/// A body's headers, kept with it in memory and in the spool.
#[derive(Debug, Clone)]
pub struct Headers {
    content_type: HeaderValue,
    content_encoding: Option<HeaderValue>,
    /// The last body of a flush: its delivery counts the flush as sent.
    ends_flush: bool,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            content_type: HeaderValue::from_static("application/octet-stream"),
            content_encoding: None,
            ends_flush: false,
        }
    }
}

/// Marks a spool record holding headers and a body (see [`Tag::pack`] below).
const RECORD_MAGIC: &[u8; 4] = b"SYH1";
/// The same, for the last body of a flush.
const RECORD_MAGIC_END: &[u8; 4] = b"SYH2";

/// A spool record is [`RECORD_MAGIC`], the content type and the content
/// encoding (each a u16 big-endian length and the bytes; an empty encoding
/// is none), then the body, so a replayed body goes out with its own
/// headers even if the output's config changed meanwhile.
impl Tag for Headers {
    fn pack(entry: &Entry<Self>) -> Bytes {
        let ct = entry.tag.content_type.as_bytes();
        let ce = entry
            .tag
            .content_encoding
            .as_ref()
            .map_or(&[][..], |v| v.as_bytes());
        let mut b = BytesMut::with_capacity(8 + ct.len() + ce.len() + entry.data.len());
        b.put_slice(if entry.tag.ends_flush {
            RECORD_MAGIC_END
        } else {
            RECORD_MAGIC
        });
        for h in [ct, ce] {
            // Header values are far shorter than 64 KiB: hyper refuses
            // longer header sections.
            b.put_u16(h.len().min(usize::from(u16::MAX)) as u16);
            b.put_slice(&h[..h.len().min(usize::from(u16::MAX))]);
        }
        b.put_slice(&entry.data);
        b.freeze()
    }

    fn unpack(record: Bytes) -> (Bytes, Self) {
        fn field(b: &mut Bytes) -> Option<Bytes> {
            if b.remaining() < 2 {
                return None;
            }
            let n = usize::from(b.get_u16());
            (b.remaining() >= n).then(|| b.split_to(n))
        }
        let mut b = record.clone();
        let ends_flush = b.starts_with(RECORD_MAGIC_END);
        if !b.starts_with(RECORD_MAGIC) && !ends_flush {
            // Not ours: the whole record as an opaque body.
            return (record, Headers::default());
        }
        b.advance(RECORD_MAGIC.len());
        let (Some(ct), Some(ce)) = (field(&mut b), field(&mut b)) else {
            return (record, Headers::default());
        };
        let headers = Headers {
            content_type: HeaderValue::from_maybe_shared(ct)
                .unwrap_or_else(|_| Headers::default().content_type),
            content_encoding: (!ce.is_empty())
                .then(|| HeaderValue::from_maybe_shared(ce).ok())
                .flatten(),
            ends_flush,
        };
        (b, headers)
    }
}

/// A configured HTTP output, ready to run.
#[derive(Debug)]
pub struct HttpOutput {
    cfg: HttpConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl HttpOutput {
    /// Check `cfg` and build its client.
    pub fn new(cfg: HttpConfig) -> Result<HttpOutput, HttpError> {
        let bad_url = |reason: String| HttpError::BadUrl {
            sink: cfg.sink.clone(),
            url: cfg.url.clone(),
            reason,
        };
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url("the scheme must be http or https".into()));
        }
        let (url, pin) = tls_target(&url, cfg.tls.as_ref()).map_err(bad_url)?;
        let tls = cfg
            .tls
            .as_ref()
            .map(TlsClient::client_config)
            .transpose()
            .map_err(bad_url)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let bad = || HttpError::BadHeader {
                sink: cfg.sink.clone(),
                name: name.clone(),
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let mut v = HeaderValue::from_str(value).map_err(|_| bad())?;
            v.set_sensitive(true);
            headers.append(n, v);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("statsyard/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = tls {
            builder = builder.use_preconfigured_tls((*t).clone());
        }
        if let Some((name, addr)) = pin {
            builder = builder.resolve(&name, addr);
        }
        let client = builder.build().map_err(|source| HttpError::Client {
            sink: cfg.sink.clone(),
            source,
        })?;
        Ok(HttpOutput {
            cfg,
            client,
            url,
            headers,
        })
    }

    /// Deliver the bodies `encoder` makes of `rx`'s messages until `rx`
    /// closes, then what is held within `shutdown_timeout`; what is left
    /// then is spooled (with a spool) or dropped and counted.
    pub async fn run<E: Encoder>(
        self,
        stats: Arc<SinkStats>,
        mut rx: mpsc::Receiver<E::Msg>,
        mut encoder: E,
    ) {
        let label = Label {
            output: self.cfg.sink.clone(),
            addr: self.url.to_string(),
        };
        let store = Store::open(
            label,
            self.cfg.buffer_bytes,
            true,
            self.cfg.spool.clone(),
            stats.spool.clone(),
            self.cfg.shutdown_timeout + Duration::from_secs(2),
        )
        .await;
        let mut e = Engine {
            backoff: Backoff::between(self.cfg.backoff_min, self.cfg.backoff_max).with_jitter(),
            out: self,
            stats,
            store,
            state: State::Idle {
                retry_at: Instant::now(),
            },
            closed: false,
            failures: 0,
            tries: 0,
            server_errors: 0,
            refusals: LogLimiter::new(1, Duration::from_secs(10)),
            fail_log: FailLog::default(),
            reported_bytes: 0,
            bodies: Vec::new(),
        };
        loop {
            e.prepare().await;
            let has_data = e.store.has_data();
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        let flush = encoder.is_flush(&msg);
                        encoder.encode(msg, &mut e.bodies);
                        e.push_bodies(flush).await;
                    }
                    None => break,
                },
                ev = progress(&mut e.state, has_data) => e.handle(ev).await,
            }
        }

        // The queue is closed: deliver what is held, within the deadline.
        // With a spool, what the store cannot take now (it failed since, or
        // the spool is still behind) goes to the spool at once.
        let deadline = Instant::now() + e.out.cfg.shutdown_timeout;
        e.closed = true;
        if let State::Idle { retry_at } = &mut e.state {
            *retry_at = Instant::now();
        }
        let failures = e.failures;
        while !e.store.buffer.is_empty() {
            if e.store.has_spool() {
                let behind = e.store.behind() && !e.store.buffer.front_tried();
                if e.failures > failures || behind {
                    break;
                }
            }
            tokio::select! {
                ev = progress(&mut e.state, true) => e.handle(ev).await,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        e.finish().await;
    }
}

type Request = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What the next request waits for.
enum State {
    /// No request in flight; the next one at `retry_at`, once there is data.
    Idle { retry_at: Instant },
    /// A request for the front entry of `src` is in flight.
    Sending { request: Request, src: Src },
}

/// Which level the request's entry is the front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Buffer,
    Replay,
}

/// How a request ended.
#[derive(Debug)]
enum Answer {
    /// 2xx.
    Delivered,
    /// 429 or 5xx: send it again after `retry_after` (or the backoff).
    Retry {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// Any other status: refused for good.
    Refused { status: StatusCode, reason: String },
    /// No answer: connect, send or read failed, or timed out.
    Failed(String),
}

enum Event {
    Due,
    Answered(Src, Answer),
}

struct Engine {
    out: HttpOutput,
    stats: Arc<SinkStats>,
    store: Store<Headers>,
    state: State,
    backoff: Backoff,
    closed: bool,
    /// Failed tries so far (of any body).
    failures: u64,
    /// Tries of the front body so far: more than one makes it a retry.
    tries: u32,
    /// 5xx answers to the front body so far.
    server_errors: u32,
    refusals: LogLimiter,
    fail_log: FailLog,
    reported_bytes: usize,
    /// Reused for each message's bodies.
    bodies: Vec<Body>,
}

/// Wait for the next thing to do. Cancel-safe: the request future lives in
/// `state`, so a message arriving meanwhile does not cancel it.
async fn progress(state: &mut State, has_data: bool) -> Event {
    match state {
        State::Idle { retry_at } => {
            retry_due(*retry_at, has_data).await;
            Event::Due
        }
        State::Sending { request, src } => {
            let answer = request.await;
            Event::Answered(*src, answer)
        }
    }
}

impl Engine {
    /// Between requests: load spooled bodies (until the shutdown), report
    /// what memory holds.
    async fn prepare(&mut self) {
        if matches!(self.state, State::Idle { .. }) && !self.closed {
            self.store.load_replay().await;
        }
        report_buffered(
            &self.stats,
            &mut self.reported_bytes,
            self.store.held_bytes(),
        );
    }

    /// Queue the bodies of one message; the last ends a flush if `flush`.
    async fn push_bodies(&mut self, flush: bool) {
        let bodies = std::mem::take(&mut self.bodies);
        let last = bodies.len().wrapping_sub(1);
        for (i, b) in bodies.into_iter().enumerate() {
            let entry = Entry {
                data: b.data,
                lines: b.points,
                tag: Headers {
                    content_type: b.content_type,
                    content_encoding: b.content_encoding,
                    ends_flush: flush && i == last,
                },
            };
            let lost = self.store.push(entry).await;
            incr(&self.stats.dropped, lost.len() as u64);
        }
    }

    /// Which level the next body comes from: the spool before memory,
    /// except a body already tried, which is older than what was spooled
    /// after it.
    fn pick(&self) -> Option<Src> {
        if !self.store.behind() || self.store.buffer.front_tried() {
            (!self.store.buffer.is_empty()).then_some(Src::Buffer)
        } else {
            (!self.store.replay.is_empty()).then_some(Src::Replay)
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Due => self.send().await,
            Event::Answered(src, answer) => self.answered(src, answer).await,
        }
    }

    /// Send the next body.
    async fn send(&mut self) {
        if self.pick().is_none() && !self.closed {
            self.store.load_replay().await;
        }
        let Some(src) = self.pick() else {
            // Nothing loaded yet (or only the spool, at shutdown).
            self.state = State::Idle {
                retry_at: Instant::now() + self.out.cfg.backoff_min,
            };
            return;
        };
        let outbox = match src {
            Src::Buffer => &mut self.store.buffer,
            Src::Replay => &mut self.store.replay,
        };
        outbox.mark_tried();
        let Some(entry) = outbox.front() else {
            return;
        };
        if self.tries > 0 {
            incr(&self.stats.retries, 1);
        }
        self.tries += 1;
        let mut req = self
            .out
            .client
            .post(self.out.url.clone())
            .headers(self.out.headers.clone())
            .header(CONTENT_TYPE, entry.tag.content_type.clone());
        if let Some(ce) = &entry.tag.content_encoding {
            req = req.header(CONTENT_ENCODING, ce.clone());
        }
        req = match &self.out.cfg.auth {
            None => req,
            Some(Auth::Basic { user, password }) => req.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => req.bearer_auth(token),
        };
        let req = req.body(entry.data.clone());
        self.state = State::Sending {
            request: Box::pin(async move { answer(req.send().await).await }),
            src,
        };
    }

    async fn answered(&mut self, src: Src, answer: Answer) {
        self.state = State::Idle {
            retry_at: Instant::now(),
        };
        if !matches!(answer, Answer::Failed(_)) {
            self.fail_log.recovered();
        }
        match answer {
            Answer::Delivered => {
                if let Some(e) = self.finish_front(src).await {
                    incr(&self.stats.lines_sent, e.lines);
                    incr(&self.stats.bytes_sent, e.data.len() as u64);
                    if e.tag.ends_flush {
                        incr(&self.stats.flushes_sent, 1);
                    }
                }
                self.stats.delivered();
                self.backoff.reset();
            }
            Answer::Refused { status, reason } => {
                let points = self.refuse_front(src).await;
                self.log_given_up(status, points, &reason);
            }
            Answer::Retry {
                status,
                retry_after,
            } => {
                self.failures += 1;
                incr(&self.stats.errors, 1);
                if status.is_server_error() {
                    self.server_errors += 1;
                }
                if self.server_errors > self.out.cfg.max_retries {
                    let points = self.refuse_front(src).await;
                    let why = format!("{} answers 5xx in a row", self.out.cfg.max_retries + 1);
                    self.log_given_up(status, points, &why);
                    return;
                }
                let wait = match retry_after {
                    Some(d) => d.min(RETRY_AFTER_MAX),
                    None => self.backoff.fail(),
                };
                self.retry_in(wait, &format!("answered {status}"));
            }
            Answer::Failed(why) => {
                self.failures += 1;
                incr(&self.stats.errors, 1);
                let wait = self.backoff.fail();
                self.retry_in(wait, &why);
            }
        }
    }

    fn retry_in(&mut self, wait: Duration, why: &str) {
        self.stats.failed(format!("request failed: {why}"));
        let held = (self.store.buffer.len(), self.store.spooled());
        self.fail_log
            .failed(&self.store.label, "request failed", why, wait, held);
        self.state = State::Idle {
            retry_at: Instant::now() + wait,
        };
    }

    /// The front body of `src` is done with: remove it (acknowledging it in
    /// the spool if it came from there).
    async fn finish_front(&mut self, src: Src) -> Option<Entry<Headers>> {
        self.tries = 0;
        self.server_errors = 0;
        match src {
            Src::Buffer => self.store.buffer.pop(),
            Src::Replay => {
                let e = self.store.replay.pop();
                self.store.replayed(1).await;
                e
            }
        }
    }

    /// A batch given up for good (counted in `refused` by
    /// [`Self::refuse_front`]): logged at a limited rate, with `why` (the
    /// store's reason, or its 5xx answers).
    fn log_given_up(&mut self, status: StatusCode, points: u64, why: &str) {
        if let Some(suppressed) = self.refusals.allow() {
            tracing::error!(
                output = %self.out.cfg.sink,
                url = %self.out.url,
                %status,
                points,
                reason = %why,
                suppressed,
                "the store refused a batch; dropped"
            );
        }
    }

    /// Give the front body of `src` up for good; returns its points.
    async fn refuse_front(&mut self, src: Src) -> u64 {
        let points = self.finish_front(src).await.map_or(0, |e| e.lines);
        incr(&self.stats.refused, points);
        points
    }

    async fn finish(mut self) {
        // A request still in flight is abandoned: its body is spooled (or
        // dropped) with the rest, and may so arrive twice.
        let left = self.store.buffer.take_all();
        let lost = self.store.close(left).await;
        if !lost.is_empty() {
            incr(&self.stats.dropped, lost.len() as u64);
            tracing::warn!(
                output = %self.out.cfg.sink,
                url = %self.out.url,
                entries = lost.len(),
                "shutdown deadline passed; dropping undelivered data"
            );
        }
        report_buffered(&self.stats, &mut self.reported_bytes, 0);
    }
}

/// Read the answer to a request: its status, `Retry-After`, and the start
/// of its body (a refusal's reason).
async fn answer(sent: reqwest::Result<reqwest::Response>) -> Answer {
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return Answer::Failed(error_chain(&e)),
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    // Read the body (to its end, so the connection can be reused) up to a
    // bound; only its start matters.
    let mut body = Vec::new();
    while body.len() < ANSWER_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(ANSWER_BYTES - body.len())]),
            Ok(None) => break,
            Err(e) if status.is_success() => {
                // The store answered 2xx: the body was taken.
                tracing::debug!(error = %e, "reading a success answer failed");
                break;
            }
            Err(e) => return Answer::Failed(error_chain(&e)),
        }
    }
    if status.is_success() {
        Answer::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Answer::Retry {
            status,
            retry_after,
        }
    } else {
        let end = body.len().min(REASON_BYTES);
        let reason = String::from_utf8_lossy(&body[..end]).trim().to_string();
        Answer::Refused { status, reason }
    }
}

/// An error and its causes, one line ("error sending request: connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (`now` to measure
/// it from; a date in the past is no wait).
fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
