//! The HTTP server (`/metrics`, `/health`, `/api/*`) and the reference's TCP
//! admin console.
//!
//! Both read the live aggregation state through the flusher
//! ([`FlusherHandle`]): the registry has one owner, the flusher thread, and
//! requests are jobs it runs between flushes. `/metrics` reads the
//! [`Exporter`](prometheus::Exporter), which the flusher feeds each flush.

pub mod admin;
pub mod api;
pub mod mapping;
pub mod prometheus;
pub mod relay_metrics;
pub mod self_metrics;
pub mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::flush::flusher::FlusherHandle;
use crate::stats::Stats;

/// The admin `health` state, which `/health` follows.
#[derive(Debug)]
pub struct Health(AtomicBool);

impl Health {
    /// Up (`true`) or down.
    pub fn new(up: bool) -> Health {
        Health(AtomicBool::new(up))
    }

    /// Whether the server says it is up.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Set the state (`health up` / `health down` on the console).
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }

    /// `"up"` or `"down"`, as the reference prints it.
    pub fn as_str(&self) -> &'static str {
        if self.is_up() {
            "up"
        } else {
            "down"
        }
    }
}

/// What the HTTP handlers and the admin console share.
#[derive(Clone)]
pub struct Shared {
    /// Self-metrics.
    pub stats: Arc<Stats>,
    /// The `health` state.
    pub health: Arc<Health>,
    /// Runs jobs on the flusher thread, with the live registry.
    pub flusher: FlusherHandle,
    /// The Prometheus view: `/metrics` serves its latest rendering.
    pub exporter: Arc<prometheus::live::Live>,
    /// The flush interval (the window of `/api/top`).
    pub interval: Duration,
    /// The admin `config` command's lines (`key: value`, `table > key: value`).
    pub config_lines: Arc<Vec<String>>,
    /// The token mutating commands require (`[admin] token`); a reload may change it.
    pub admin_token: Arc<AdminToken>,
}

/// `[admin] token`: what mutating admin commands and `POST /-/reload` require.
#[derive(Debug, Default)]
pub struct AdminToken(std::sync::RwLock<Option<Arc<str>>>);

impl AdminToken {
    pub fn new(token: Option<&str>) -> AdminToken {
        AdminToken(std::sync::RwLock::new(token.map(Arc::from)))
    }

    /// Replace the token (a reload).
    pub fn set(&self, token: Option<&str>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token.map(Arc::from);
    }

    /// Whether a token is configured.
    pub fn required(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Whether `given` is the token, or none is required. The comparison
    /// takes the same time wherever the first difference is.
    pub fn accepts(&self, given: Option<&[u8]>) -> bool {
        let want = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        match (want, given) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(w), Some(g)) => {
                let w = w.as_bytes();
                let mut diff = (w.len() != g.len()) as u8;
                for (i, &b) in w.iter().enumerate() {
                    diff |= b ^ g.get(i).copied().unwrap_or(0);
                }
                diff == 0
            }
        }
    }
}
