//! Live reload (SIGHUP, `POST /-/reload`, the console's `reload`): re-read
//! the config the process was started with and apply the change to the
//! running server, keeping the registry and the shards (so aggregates in
//! flight are not lost).
//!
//! The protocol, in order, so that a refused reload changes nothing:
//!
//! 1. Load the new config with the same loader as at start ([`Source`]). An
//!    invalid file is refused here: the old config keeps running.
//! 2. [`plan`](crate::config::diff::plan) it against the running config.
//! 3. [`Runtime::prepare`]: build and bind everything that can fail (new
//!    outputs, a new router, new sockets) before anything is touched.
//! 4. [`Runtime::commit`]: the flusher takes its new options and outputs
//!    in one message (the next flush goes to the new set); a removed or
//!    changed sink loses its queue's sender, which is its shutdown signal: it
//!    delivers what it holds within `shutdown_timeout` and stops, as at
//!    shutdown. Unchanged outputs are not touched. New listeners and front
//!    ends start; removed ones stop, reading what they already hold as at
//!    shutdown.
//! 5. Set the log level.
//!
//! Reloads run one at a time: the runtime's lock is held throughout.
//!
//! Imports, besides `runtime` itself: `config`, `front`, `stats`.

use std::future::Future;
use std::pin::Pin;

use super::{ReloadError, Runtime};
use crate::config::diff::{plan, ReloadReport};
use crate::config::Config;
use crate::stats::incr;

/// Loads the config again, exactly as at start (flags re-applied).
pub type LoadFn = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;
/// Sets the log filter (a `tracing` directive such as `info` or `statsyard=debug`).
pub type LogFn = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where a reload reads its config from, and how it sets the log level;
/// built by `main.rs`, which knows the command line.
#[derive(Default)]
pub struct Source {
    load: Option<LoadFn>,
    /// Why there is nothing to re-read, when `load` is `None`.
    why_not: String,
    set_log_level: Option<LogFn>,
}

impl Source {
    /// Re-read with `load`.
    pub fn new(load: LoadFn) -> Source {
        Source {
            load: Some(load),
            why_not: String::new(),
            set_log_level: None,
        }
    }

    /// Nothing to re-read (the embedded default, flags alone, or an
    /// in-process server); every reload is refused with `why`.
    pub fn none(why: impl Into<String>) -> Source {
        Source {
            load: None,
            why_not: why.into(),
            set_log_level: None,
        }
    }

    /// Apply `[log] level` with `f` on reload. Without it the level is a
    /// restart-only key.
    pub fn with_log_level(mut self, f: LogFn) -> Source {
        self.set_log_level = Some(f);
        self
    }
}

/// The running server's reload state, shared by the SIGHUP loop, the HTTP
/// route and the console.
pub struct Reloader {
    source: Source,
    /// The running server; the async lock makes changes one at a time.
    runtime: tokio::sync::Mutex<Runtime>,
}

impl Reloader {
    pub fn new(source: Source, runtime: Runtime) -> Reloader {
        Reloader {
            source,
            runtime: tokio::sync::Mutex::new(runtime),
        }
    }

    /// The running server.
    pub fn runtime(&self) -> &tokio::sync::Mutex<Runtime> {
        &self.runtime
    }

    /// Reload, counting and logging the outcome.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut rt = self.runtime.lock().await;
        let stats = rt.stats.clone();
        // The outcome is recorded before the counters move: whoever sees
        // `reloads` (or `reload_failures`) go up reads this reload's
        // `last_reload_*`.
        let outcome = self.try_reload(&mut rt).await;
        match outcome {
            Ok(r) => {
                stats.reloaded(true, summary(&r));
                incr(&stats.reloads, 1);
                tracing::info!(
                    source = %r.source,
                    applied = ?r.applied,
                    sinks_added = ?r.sinks_added,
                    sinks_removed = ?r.sinks_removed,
                    sinks_changed = ?r.sinks_changed,
                    "config reloaded"
                );
                if !r.restart_required.is_empty() {
                    tracing::warn!(
                        keys = ?r.restart_required,
                        "config reloaded, but these changes need a restart; their old values keep running"
                    );
                }
                Ok(r)
            }
            Err(e) => {
                stats.reloaded(false, e.to_string());
                incr(&stats.reloads, 1);
                incr(&stats.reload_failures, 1);
                tracing::error!(error = %e, "reload refused; the old config keeps running");
                Err(e)
            }
        }
    }

    async fn try_reload(&self, rt: &mut Runtime) -> Result<ReloadReport, ReloadError> {
        if rt.stopping() {
            return Err(ReloadError::ShuttingDown);
        }
        let Some(load) = &self.source.load else {
            return Err(ReloadError::NoSource(self.source.why_not.clone()));
        };
        // Reading a file is quick; a blocking read here is fine.
        let new = load().map_err(ReloadError::Invalid)?;
        for w in &new.warnings {
            tracing::warn!(source = %new.source, "{w}");
        }
        let Some(current) = rt.config() else {
            return Err(ReloadError::ShuttingDown);
        };
        let mut plan = plan(Some(current), &new);
        let old_level = current.log.level.clone();
        let level_changed = old_level != plan.effective.log.level;
        if level_changed {
            if self.source.set_log_level.is_none() {
                // No way to apply it (RUST_LOG set, or an in-process server).
                plan.report.applied.retain(|k| k != "[log] level");
                plan.report.restart_required.push("[log] level".into());
                plan.effective.log.level = old_level;
            } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&plan.effective.log.level)
            {
                return Err(ReloadError::LogLevel {
                    level: plan.effective.log.level.clone(),
                    reason: e.to_string(),
                });
            }
        }
        let change = rt.prepare(&plan)?;
        let (report, level) = (plan.report.clone(), plan.effective.log.level.clone());
        rt.commit(plan, change).await;
        if level_changed {
            if let Some(set) = &self.source.set_log_level {
                // Checked above; a failure now would leave the old level, which is safe.
                if let Err(e) = set(&level) {
                    tracing::error!(error = %e, "cannot set the log level");
                }
            }
        }
        Ok(report)
    }
}

/// What a reload did, in one line (the status page's "last reload").
fn summary(r: &ReloadReport) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("applied", &r.applied),
        ("sinks added", &r.sinks_added),
        ("sinks removed", &r.sinks_removed),
        ("sinks changed", &r.sinks_changed),
        ("need a restart", &r.restart_required),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what}: {}", list.join(", ")));
        }
    }
    if parts.is_empty() {
        "no change".to_string()
    } else {
        parts.join("; ")
    }
}

impl crate::front::Reload for Reloader {
    fn reload(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<ReloadReport, crate::front::Refused>> + Send + '_>>
    {
        Box::pin(async move { Reloader::reload(self).await.map_err(Into::into) })
    }
}
