//! Run a server: start it ([`crate::runtime::start`], the change from
//! nothing to the config), reload on SIGHUP, and shut down in order on
//! SIGINT or SIGTERM. The embedding API (`main.rs`, tests) lives here.
//!
//! Imports: [`crate::config`], [`crate::runtime`], [`crate::shutdown`];
//! imported by `main.rs` and tests.

use crate::config::Config;
pub use crate::runtime::outputs::{BuildSink, ExtraSink};
pub use crate::runtime::reload::{LoadFn, LogFn, Source};
pub use crate::runtime::ReloadError;
pub use crate::runtime::Running;

/// Start the server and run it until SIGINT or SIGTERM, then shut down in order.
pub async fn run(config: Config) -> Result<(), ReloadError> {
    run_with(config, Source::none("no config file to re-read")).await
}

/// [`run`], reloading from `source` on SIGHUP.
pub async fn run_with(config: Config, source: Source) -> Result<(), ReloadError> {
    run_with_ready(config, source, |_| {}).await
}

/// [`run_with`], calling `ready` once everything listens.
pub async fn run_with_ready(
    config: Config,
    source: Source,
    ready: impl FnOnce(&Running),
) -> Result<(), ReloadError> {
    // Watch the signals before anything starts: their default action ends
    // the process, `systemctl reload` may come at any time, and a SIGTERM
    // sent as soon as a listener logs "listening" must still stop in order
    // (the final flush, the persisted counters).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let stop = crate::shutdown::StopSignals::watch();
    let running = start_with(config, source).await?;
    ready(&running);
    reload_on_sighup_until_stopped(&running, hup, stop).await;
    tracing::info!("signal received, shutting down");
    running.shutdown();
    running.wait().await;
    Ok(())
}

/// Reload on every SIGHUP until SIGINT or SIGTERM. A refused reload is
/// logged and counted by the reloader; the server keeps running either way.
async fn reload_on_sighup_until_stopped(
    running: &Running,
    hup: std::io::Result<tokio::signal::unix::Signal>,
    mut stop: crate::shutdown::StopSignals,
) {
    let mut hup = match hup {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; reload with POST /-/reload");
            stop.recv().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = running.reload.reload().await;
            }
        }
    }
}

/// Bind, build and spawn everything the config describes (no reload source).
pub async fn start(config: Config) -> Result<Running, ReloadError> {
    start_with(config, Source::none("started in-process")).await
}

/// [`start`], plus sinks that are not in the config (see [`ExtraSink`]).
pub async fn start_with_extra_sinks(
    config: Config,
    extra: Vec<ExtraSink>,
) -> Result<Running, ReloadError> {
    crate::runtime::start(config, Source::none("started in-process"), extra).await
}

/// [`start`], with the reload source that SIGHUP and `POST /-/reload` use.
pub async fn start_with(config: Config, source: Source) -> Result<Running, ReloadError> {
    crate::runtime::start(config, source, Vec::new()).await
}
