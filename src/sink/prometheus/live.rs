//! The exporter's life: idle until `/metrics` is first requested, fed and
//! rendered once per flush while scraped, freed after `idle_timeout` without
//! a scrape.
//!
//! Why: the exporter keeps state per series (about as much as the registry
//! itself), and HTTP is on by default. A server nobody scrapes must not pay
//! for it, in memory or in flush time.
//!
//! Who touches what:
//! - the exporter itself only on the flusher thread (each flush, and the
//!   activation job a first scrape sends), so its lock is never contended;
//! - scrapes only clone the latest [`Rendered`] under a short lock and never
//!   wait for a render or a flush (except the first one, which waits for
//!   the flusher to build the exporter).
//!
//! Imports, besides `sink` itself: `aggregate`, `stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::exporter::{Exporter, PromOptions};
use crate::aggregate::Registry;
use crate::stats::prometheus::PromStats;

/// The exposition of one flush, as scrapes serve it.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The client series' text; cheap to clone, so a slow client holds only
    /// its own reference, never a lock.
    pub text: Bytes,
    pub stats: PromStats,
}

/// The exporter, its latest rendering, and when it was last scraped.
#[derive(Debug)]
pub struct Live {
    /// Changed by [`Live::reconfigure`] on a reload.
    opts: Mutex<PromOptions>,
    /// Where `last_scrape` counts from.
    epoch: Instant,
    /// Nanoseconds since `epoch` of the last scrape.
    last_scrape: AtomicU64,
    /// None while idle. Locked only on the flusher thread.
    exporter: Mutex<Option<Exporter>>,
    rendered: Mutex<Arc<Rendered>>,
}

impl Live {
    /// An active exporter with these options, as if scraped just now: it
    /// observes from the start, so that the first scrape (a new user's
    /// `curl /metrics`, or Prometheus') already shows what was sent before
    /// it. Nobody scraping within `idle_timeout` frees it.
    pub fn new(opts: PromOptions) -> Live {
        let exporter = Exporter::new(opts.clone());
        Live {
            opts: Mutex::new(opts),
            epoch: Instant::now(),
            last_scrape: AtomicU64::new(0),
            exporter: Mutex::new(Some(exporter)),
            rendered: Mutex::new(Arc::new(Rendered::default())),
        }
    }

    fn options(&self) -> PromOptions {
        self.opts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A config reload: new options (the mapping included). An active
    /// exporter is rebuilt empty (Prometheus sees a counter reset, which
    /// `rate()` handles); a freed one picks them up when next started.
    pub fn reconfigure(&self, opts: PromOptions) {
        {
            let mut guard = self.exporter.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_some() {
                *guard = Some(Exporter::new(opts.clone()));
            }
        }
        *self.opts.lock().unwrap_or_else(|e| e.into_inner()) = opts;
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// The latest rendering (empty and inactive while idle). A scrape calls
    /// [`Live::scraped`] too.
    pub fn rendered(&self) -> Arc<Rendered> {
        self.rendered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Note a scrape, which keeps the exporter active.
    pub fn scraped(&self) {
        self.last_scrape
            .store(self.nanos(Instant::now()), Ordering::Relaxed);
    }

    /// Flusher thread, from the job a scrape sends while no rendering is
    /// active (before the first flush, or after `idle_timeout` freed the
    /// exporter): build the exporter if it is gone, seed it from the
    /// registry (gauges and sets, see [`Exporter::seed`]) and publish a
    /// rendering.
    pub fn activate(&self, registry: &Registry) -> Arc<Rendered> {
        {
            let mut guard = self.exporter.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(exporter) = guard.as_mut() {
                // Active since start, not flushed yet: show the gauges and
                // sets the registry holds already.
                exporter.seed(registry, Instant::now());
                drop(guard);
                self.scraped();
                return self.publish(0);
            }
            let mut exporter = Exporter::new(self.options());
            exporter.seed(registry, Instant::now());
            tracing::info!(
                series = exporter.series(),
                "prometheus: /metrics requested, the exporter is now active"
            );
            *guard = Some(exporter);
        }
        self.scraped();
        self.publish(0)
    }

    /// Flusher thread, once per flush (after compute(), before
    /// end_interval()): drop the exporter if nobody scraped for
    /// `idle_timeout`, else feed it. Returns whether there is something to
    /// render ([`Live::publish`], once the sinks have their batch).
    pub fn observe(&self, registry: &Registry, now: Instant) -> Option<u64> {
        let mut guard = self.exporter.lock().unwrap_or_else(|e| e.into_inner());
        let exporter = guard.as_mut()?;
        let idle = Duration::from_nanos(
            self.nanos(now)
                .saturating_sub(self.last_scrape.load(Ordering::Relaxed)),
        );
        let idle_timeout = self
            .opts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .idle_timeout;
        if !idle_timeout.is_zero() && idle > idle_timeout {
            let series = exporter.series();
            *guard = None;
            drop(guard);
            // Scrapes from now on activate a new exporter; Prometheus sees
            // its counters restart, which it handles as a reset.
            *self.rendered.lock().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(Rendered::default());
            tracing::info!(
                series,
                idle_secs = idle.as_secs(),
                "prometheus: /metrics not requested within idle_timeout, the exporter is freed"
            );
            return None;
        }
        let started = Instant::now();
        exporter.observe(registry, now);
        Some(started.elapsed().as_micros() as u64)
    }

    /// Flusher thread: render the exporter once for every scrape until the
    /// next flush. `observe_micros` is what [`Live::observe`] returned.
    pub fn publish(&self, observe_micros: u64) -> Arc<Rendered> {
        let started = Instant::now();
        // Sized from the last rendering: one allocation, no regrowth copies.
        let hint = self.rendered().text.len();
        let guard = self.exporter.lock().unwrap_or_else(|e| e.into_inner());
        let Some(exporter) = guard.as_ref() else {
            return self.rendered();
        };
        let mut text = Vec::with_capacity(hint + hint / 16 + 4096);
        exporter.render(&mut text);
        let rendered = Arc::new(Rendered {
            text: Bytes::from(text),
            stats: PromStats {
                active: true,
                series: exporter.series(),
                conflicts: exporter.conflicts(),
                over_limit: exporter.over_limit(),
                observe_micros,
                render_micros: started.elapsed().as_micros() as u64,
            },
        });
        drop(guard);
        *self.rendered.lock().unwrap_or_else(|e| e.into_inner()) = rendered.clone();
        rendered
    }
}
