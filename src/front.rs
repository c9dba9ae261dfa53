//! What the front ends (the HTTP server and the admin console) read and
//! change: the counters, the `health` state, the flusher's job queue (the
//! live registry), the admin token, what `/metrics` serves, the reload hook,
//! and the settings a reload changes ([`Settings`]: the flush interval and
//! the `config` lines), kept here in one place that the runtime updates.
//!
//! Imports: the counters, the flusher's handle, the exporter's rendering and
//! the reload's report; never the runtime itself, which hands in its reload
//! hook ([`Reload`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::config::diff::ReloadReport;
use crate::flusher::FlusherHandle;
use crate::sink::prometheus::live::Live;
use crate::stats::Stats;
use crate::web_config::WebConfig;

/// What the HTTP handlers and the admin console share; one per server.
pub struct Front {
    /// Self-metrics.
    pub stats: Arc<Stats>,
    /// The `health` state.
    pub health: Health,
    /// Runs jobs on the flusher thread, with the live registry.
    pub flusher: FlusherHandle,
    /// The token mutating commands require (`[admin] token`).
    pub admin_token: AdminToken,
    /// Liveness (`/api/dark`) and the events hub (`/api/events`, `/api/checks`).
    pub side: crate::listener::SideCtx,
    settings: RwLock<Arc<Settings>>,
    /// What `GET /metrics` serves: the Prometheus exporter output's, while
    /// one runs.
    scrape: RwLock<Option<Arc<Live>>>,
    /// The HTTP server's users and headers (`web_config_file`).
    web: RwLock<Option<Arc<WebConfig>>>,
    /// Rate limit of the "refused: wrong credentials" log line.
    auth_log: std::sync::Mutex<crate::log_limit::LogLimiter>,
    /// Credentials that passed bcrypt, by user, so that each request does
    /// not pay for bcrypt again; cleared when the web config changes.
    verified: std::sync::Mutex<std::collections::HashMap<String, String>>,
    reload: OnceLock<Arc<dyn Reload>>,
}

/// The settings a reload may change that the front ends show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The flush interval (the window of `/api/top`).
    pub interval: Duration,
    /// The admin `config` command's lines (`key: value`, `table > key: value`).
    pub config_lines: Vec<String>,
    /// `[statsd] max_series` (0: no limit), for the status page.
    pub max_series: usize,
    /// `[statsd] series_limits`: (prefix, max), for the status page.
    pub series_limits: Vec<(String, usize)>,
}

/// Reloads the config (SIGHUP, `POST /-/reload`, the console's `reload`).
pub trait Reload: Send + Sync {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadReport, Refused>> + Send + '_>>;
}

/// Why a reload was refused, as the front ends tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The new config is at fault (HTTP 400), not the server (503).
    pub config: bool,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Front {
    pub fn new(
        stats: Arc<Stats>,
        flusher: FlusherHandle,
        health_up: bool,
        side: crate::listener::SideCtx,
    ) -> Front {
        Front {
            stats,
            side,
            health: Health::new(health_up),
            flusher,
            admin_token: AdminToken::new(None),
            settings: RwLock::new(Arc::new(Settings::default())),
            scrape: RwLock::new(None),
            web: RwLock::new(None),
            auth_log: std::sync::Mutex::new(crate::log_limit::LogLimiter::new(
                10,
                Duration::from_secs(60),
            )),
            verified: std::sync::Mutex::new(std::collections::HashMap::new()),
            reload: OnceLock::new(),
        }
    }

    /// The settings in effect.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// New settings (start, and every reload).
    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }

    /// What `/metrics` serves, if an exporter runs.
    pub fn scrape(&self) -> Option<Arc<Live>> {
        self.scrape
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serve this exporter's rendering on `/metrics` (or none).
    pub fn set_scrape(&self, live: Option<Arc<Live>>) {
        *self.scrape.write().unwrap_or_else(|e| e.into_inner()) = live;
    }

    /// The HTTP server's web config, if one is set.
    pub fn web(&self) -> Option<Arc<WebConfig>> {
        self.web.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new web config (start, a reload that changed it).
    pub fn set_web(&self, web: Option<WebConfig>) {
        *self.web.write().unwrap_or_else(|e| e.into_inner()) = web.map(Arc::new);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether `user` and `password` are a user of the web config (by its
    /// bcrypt hash), or no users are configured. A pair that passed is
    /// remembered, so bcrypt runs once per user and password, not per request.
    pub fn authorized(&self, credentials: Option<(&str, &str)>) -> bool {
        let Some(web) = self.web().filter(|w| !w.users.is_empty()) else {
            return true;
        };
        let Some((user, password)) = credentials else {
            return false;
        };
        let Some(hash) = web.users.get(user) else {
            // The same cost as a known user, so the answer's time does not
            // tell which users exist.
            let _ = bcrypt::verify(password, DUMMY_HASH);
            return false;
        };
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = verified.get(user) {
                if crate::front::same(p.as_bytes(), password.as_bytes()) {
                    return true;
                }
            }
        }
        if bcrypt::verify(password, hash).unwrap_or(false) {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.to_string(), password.to_string());
            true
        } else {
            false
        }
    }

    /// Whether to log one more refused request now (and how many were not).
    pub fn auth_log(&self) -> Option<u64> {
        self.auth_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow()
    }

    /// The reload hook, if the server has one.
    pub fn reloader(&self) -> Option<&Arc<dyn Reload>> {
        self.reload.get()
    }

    /// Install the reload hook (once, at start).
    pub fn set_reloader(&self, r: Arc<dyn Reload>) {
        let _ = self.reload.set(r);
    }
}

/// A bcrypt hash of nothing in particular (cost 10), verified against for
/// unknown users.
const DUMMY_HASH: &str = "$2b$10$wq6Xn/8SW1ZFSiVZ9H6uKOmJr3V3Ks/uDXEQv6oTUWyEzFtJ6dsxy";

/// Equal bytes, in a time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for (i, &x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

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

/// `[admin] token`: what mutating admin commands and `POST /-/reload` require.
#[derive(Debug, Default)]
pub struct AdminToken(RwLock<Option<Arc<str>>>);

impl AdminToken {
    pub fn new(token: Option<&str>) -> AdminToken {
        AdminToken(RwLock::new(token.map(Arc::from)))
    }

    /// Replace the token (start, a reload).
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
            (Some(w), Some(g)) => same(w.as_bytes(), g),
        }
    }
}
