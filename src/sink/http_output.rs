//! The keys every batched HTTP output takes (`influxdb`,
//! `prometheus_remote_write`), their defaults and their checks, in one
//! place: each kind reads them from its table with [`RawHttp::split`]
//! (before its own keys), and turns them into [`HttpSettings`], which
//! become the delivery engine's
//! [`HttpConfig`] at build time. What the keys mean for delivery (retries,
//! `Retry-After`, refusals, the spool) is [`crate::deliver::http`]'s.
//!
//! Imports, besides `sink` itself: `check`, `deliver`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde::de::DeserializeOwned;

use super::{keys_of, BuildCx, SinkError, ValidateCx};
use crate::check::{check_backoff, check_nonzero, Bad};
use crate::deliver::http::{Auth, HttpConfig, HttpOutput};
use crate::tls::{RawTlsClient, TlsClient};

/// The keys shared by HTTP outputs (part of each kind's table).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// The store's base URL, `http://host:port` or `https://...`.
    pub url: Option<String>,
    /// Extra headers on every request, `{ "X-Scope-OrgID" = "team-a" }`.
    pub headers: Option<BTreeMap<String, String>>,
    /// Points (lines, samples) per request at most.
    pub batch_points: Option<usize>,
    /// Bytes of one request's body, before compression, at most (a single
    /// larger point still goes, alone).
    pub batch_bytes: Option<usize>,
    /// Bytes of request bodies held in memory while the store is slow or
    /// down; past this the oldest go to the spool, or are dropped.
    pub buffer_bytes: Option<usize>,
    /// How long a connection attempt may take.
    #[serde(default, with = "humantime_serde::option")]
    pub connect_timeout: Option<Duration>,
    /// How long one request (sending the body, reading the answer) may take.
    #[serde(default, with = "humantime_serde::option")]
    pub request_timeout: Option<Duration>,
    /// The first wait before a retry.
    #[serde(default, with = "humantime_serde::option")]
    pub backoff_min: Option<Duration>,
    /// The longest wait before a retry.
    #[serde(default, with = "humantime_serde::option")]
    pub backoff_max: Option<Duration>,
    /// Retries of a request answered with a 5xx before it is given up
    /// (counted as refused); 429 and network errors are retried until the
    /// store takes the request.
    pub max_retries: Option<u32>,
    /// Directory of the disk spool (relative to the config file's
    /// directory); the output uses its own subdirectory, named after it.
    /// Unset: no spool.
    pub spool_dir: Option<String>,
    /// Bytes the spool keeps at most (1 GiB).
    pub spool_bytes: Option<u64>,
    /// TLS to an `https://` store: `{ ca_file, cert_file, key_file,
    /// server_name, insecure_skip_verify }`, as a graphite sink's; unset:
    /// the system's trusted CAs, no client certificate.
    pub tls: Option<RawTlsClient>,
}

/// The defaults a kind gives the batch keys.
#[derive(Debug, Clone, Copy)]
pub struct BatchDefaults {
    pub points: usize,
    pub bytes: usize,
}

const DEFAULT_BUFFER_BYTES: usize = 64 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
const DEFAULT_MAX_RETRIES: u32 = 10;

/// [`RawHttp`], checked: the engine's settings (`sink` and
/// `shutdown_timeout` are the build's: [`HttpSettings::output`]) and the
/// batch bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub engine: HttpConfig,
    pub batch_points: usize,
    pub batch_bytes: usize,
}

impl RawHttp {
    /// Every key of a table that has these keys and `T`'s.
    pub fn keys_with<T: Default + Serialize>() -> Vec<String> {
        let mut keys = keys_of::<RawHttp>();
        keys.extend(keys_of::<T>());
        keys
    }

    /// Read a table of these keys and a kind's own (`T`): errors name the
    /// key.
    pub fn split<T: DeserializeOwned>(
        mut table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<(RawHttp, T), Bad> {
        let mut http = toml::Table::new();
        for k in keys_of::<RawHttp>() {
            if let Some(v) = table.remove(&k) {
                http.insert(k, v);
            }
        }
        Ok((cx.table(http)?, cx.table(table)?))
    }

    /// The base URL, parsed: `http` or `https`, no query.
    pub fn base_url(&self, cx: &ValidateCx<'_>) -> Result<reqwest::Url, Bad> {
        let Some(url) = &self.url else {
            return Err(cx.bad(
                "url",
                format!("a {} output needs `url = \"http://host:port\"`", cx.kind),
            ));
        };
        let parsed =
            reqwest::Url::parse(url).map_err(|e| cx.bad("url", format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(cx.bad("url", format!("{url:?}: the scheme must be http or https")));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(cx.bad("url", format!("{url:?}: no host")));
        }
        Ok(parsed)
    }

    /// Check every key. `url` is the full URL requests go to, `auth` the
    /// kind's credentials, `extra` headers the kind always sends (after
    /// the configured ones).
    pub fn validate(
        self,
        cx: &ValidateCx<'_>,
        url: reqwest::Url,
        auth: Option<Auth>,
        extra: &[(&str, String)],
        batch: BatchDefaults,
    ) -> Result<HttpSettings, Bad> {
        let mut headers = Vec::new();
        for (name, value) in self.headers.unwrap_or_default() {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| cx.bad("headers", format!("{name:?} is not a header name")))?;
            reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| cx.bad("headers", format!("the value of {name:?} is not valid")))?;
            headers.push((name, value));
        }
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.clone())));
        let batch_points = self.batch_points.unwrap_or(batch.points);
        if batch_points == 0 {
            return Err(cx.bad("batch_points", "must be at least 1"));
        }
        let batch_bytes = self.batch_bytes.unwrap_or(batch.bytes);
        if batch_bytes < 1024 {
            return Err(cx.bad("batch_bytes", "must be at least 1024"));
        }
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        check_nonzero(connect_timeout).map_err(|r| cx.bad("connect_timeout", r))?;
        let request_timeout = self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        check_nonzero(request_timeout).map_err(|r| cx.bad("request_timeout", r))?;
        let backoff_min = self.backoff_min.unwrap_or(DEFAULT_BACKOFF_MIN);
        check_nonzero(backoff_min).map_err(|r| cx.bad("backoff_min", r))?;
        let backoff_max = self.backoff_max.unwrap_or(DEFAULT_BACKOFF_MAX);
        check_backoff(backoff_min, backoff_max).map_err(|r| cx.bad("backoff_max", r))?;
        // Loaded here (a rewritten file is a change: a reload rebuilds the
        // output with it) and checked against the url, so that a mistake
        // fails the config, not the build.
        let tls = self
            .tls
            .as_ref()
            .map(|t| TlsClient::load(t, cx.file))
            .transpose()
            .map_err(|r| cx.bad("tls", r))?;
        crate::deliver::http::tls_target(&url, tls.as_ref()).map_err(|r| cx.bad("tls", r))?;
        Ok(HttpSettings {
            engine: HttpConfig {
                sink: String::new(),
                url: url.to_string(),
                auth,
                headers,
                buffer_bytes: self.buffer_bytes.unwrap_or(DEFAULT_BUFFER_BYTES),
                connect_timeout,
                request_timeout,
                backoff_min,
                backoff_max,
                max_retries: self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
                shutdown_timeout: Duration::ZERO,
                spool: cx.spool(self.spool_dir.as_deref(), self.spool_bytes)?,
                tls,
            },
            batch_points,
            batch_bytes,
        })
    }
}

impl HttpSettings {
    /// The delivery engine of the output `cx` builds.
    pub fn output(&self, cx: &BuildCx) -> Result<HttpOutput, SinkError> {
        HttpOutput::new(HttpConfig {
            sink: cx.name.clone(),
            shutdown_timeout: cx.shutdown_timeout,
            ..self.engine.clone()
        })
        .map_err(|e| SinkError::Other {
            sink: cx.name.clone(),
            reason: e.to_string(),
        })
    }
}

/// Cuts a stream of encoded points into request bodies of at most
/// `points` points and about `bytes` bytes: a point that would take the
/// body past `bytes` starts the next one (a single larger point goes alone).
#[derive(Debug)]
pub struct Batcher {
    points: usize,
    bytes: usize,
    /// The body being filled.
    pub buf: Vec<u8>,
    /// Points in `buf`.
    n: usize,
    /// Where the last point in `buf` starts.
    last: usize,
}

impl Batcher {
    pub fn new(points: usize, bytes: usize) -> Batcher {
        Batcher {
            points,
            bytes,
            buf: Vec::new(),
            n: 0,
            last: 0,
        }
    }

    /// Call before appending a point to `buf`.
    pub fn start_point(&mut self) {
        self.last = self.buf.len();
    }

    /// Call after appending a point to `buf`: hands `done` each body that
    /// is complete, with its points.
    pub fn end_point(&mut self, done: &mut impl FnMut(&[u8], u64)) {
        self.n += 1;
        if self.buf.len() > self.bytes && self.n > 1 {
            // This point goes with the next body.
            done(&self.buf[..self.last], (self.n - 1) as u64);
            self.buf.drain(..self.last);
            self.n = 1;
        }
        if self.n >= self.points || self.buf.len() >= self.bytes {
            self.finish(done);
        }
    }

    /// Hand over what is left as the last body.
    pub fn finish(&mut self, done: &mut impl FnMut(&[u8], u64)) {
        if self.n > 0 {
            done(&self.buf, self.n as u64);
        }
        self.buf.clear();
        self.n = 0;
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(points: usize, bytes: usize, items: &[&str]) -> Vec<(String, u64)> {
        let mut b = Batcher::new(points, bytes);
        let mut out = Vec::new();
        let mut done = |body: &[u8], n: u64| out.push((String::from_utf8_lossy(body).into(), n));
        for i in items {
            b.start_point();
            b.buf.extend_from_slice(i.as_bytes());
            b.end_point(&mut done);
        }
        b.finish(&mut done);
        out
    }

    #[test]
    fn bodies_are_bounded_in_points_and_bytes() {
        assert_eq!(
            cut(2, 100, &["a", "b", "c"]),
            [("ab".to_string(), 2), ("c".to_string(), 1)]
        );
        // "ccc" would take the body past 4 bytes: it starts the next one.
        assert_eq!(
            cut(10, 4, &["aa", "b", "ccc", "d"]),
            [("aab".to_string(), 2), ("cccd".to_string(), 2),]
        );
        // A point larger than the bound goes alone.
        assert_eq!(
            cut(10, 4, &["a", "bbbbbbb", "c"]),
            [
                ("a".to_string(), 1),
                ("bbbbbbb".to_string(), 1),
                ("c".to_string(), 1)
            ]
        );
        assert!(cut(3, 10, &[]).is_empty());
    }
}
