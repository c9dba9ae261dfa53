//! Every output, built and started the same way at start and at a reload:
//! [`prepare`] builds it (everything that can fail, before anything
//! changes), [`Outputs::start`] gives it its queue, runs its task under the
//! supervisor and hands the flusher what it needs ([`Output`]).
//!
//! Imports, besides `runtime` itself: `events`, `flusher`, `sink`, `stats`,
//! `supervise`.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::events::EventOut;
use crate::flusher::{Output, SinkQueue};
use crate::sink::prometheus::live::Live;
use crate::sink::supervise::SinkFactory;
use crate::sink::{BuildCx, Built, Input, Sink, SinkError, SinkMsg, SinkSpec};
use crate::stats::{SinkStats, Stats};
use crate::supervise::Backoff;

/// An output that is not in the config, added by the embedding program (or a
/// test) with [`crate::server::start_with_extra_sinks`]. It runs like a
/// configured sink: its own bounded queue, under the supervisor, with its
/// counters in `/api/stats` under `name`. A reload never touches it.
pub struct ExtraSink {
    /// Unique among sinks.
    pub name: String,
    /// Capacity of its queue, in messages.
    pub queue: usize,
    /// Builds the sink, at start and again after it panicked.
    pub build: BuildSink,
}

/// Builds an [`ExtraSink`] with its counters.
pub type BuildSink = Box<dyn FnMut(Arc<SinkStats>) -> Result<Box<dyn Sink>, SinkError> + Send>;

/// An output built and not started yet.
pub struct Prepared {
    name: String,
    queue: usize,
    input: Input,
    /// Whether it also takes events.
    events: bool,
    stats: Arc<SinkStats>,
    /// Whether its counters are listed among the sinks'.
    counted: bool,
    built: Built,
    /// Builds its task again after a panic.
    factory: SinkFactory,
}

/// Build the output `spec` describes. Its counters are the ones it had (a
/// changed sink keeps them), or new ones, registered when it starts.
pub fn prepare(spec: &SinkSpec, cx: BuildCx) -> Result<Prepared, SinkError> {
    let built = spec.config.build(&cx)?;
    let config = spec.config.clone();
    let again = cx.clone();
    let factory: SinkFactory = Box::new(move || {
        config.build(&again)?.sink.ok_or_else(|| SinkError::Other {
            sink: again.name.clone(),
            reason: "built without a task".into(),
        })
    });
    Ok(Prepared {
        name: spec.name.clone(),
        queue: spec.queue.max(1),
        input: spec.config.input(),
        events: spec.config.takes_events(),
        counted: spec.config.counted(),
        stats: cx.stats,
        built,
        factory,
    })
}

/// Build an [`ExtraSink`].
pub fn prepare_extra(mut e: ExtraSink, stats: &Stats) -> Result<Prepared, SinkError> {
    let sink_stats = stats
        .sink_named(&e.name)
        .unwrap_or_else(|| Arc::new(Stats::unregistered_sink(&e.name)));
    let first = (e.build)(sink_stats.clone())?;
    let again = sink_stats.clone();
    Ok(Prepared {
        name: e.name,
        queue: e.queue.max(1),
        input: Input::Flush,
        events: false,
        counted: true,
        stats: sink_stats,
        built: Built {
            sink: Some(first),
            ..Built::default()
        },
        factory: Box::new(move || (e.build)(again.clone())),
    })
}

impl Prepared {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What started outputs give the rest of the server.
#[derive(Default)]
pub struct Wiring {
    /// For the flusher.
    pub flush: Vec<Output>,
    /// The repeaters' queues, for the listeners' raw tap.
    pub raw: Vec<(String, mpsc::Sender<SinkMsg>)>,
    /// What `/metrics` serves, if an exporter started.
    pub scrape: Option<Arc<Live>>,
    /// The queues of the outputs that take events, for the events hub.
    pub events: Vec<EventOut>,
}

/// The running outputs' tasks.
#[derive(Default)]
pub struct Outputs {
    /// Every sink task started; shutdown waits for them all.
    tasks: Vec<JoinHandle<()>>,
}

impl Outputs {
    /// Start `prepared`: each task on its own queue under the supervisor.
    pub fn start(&mut self, prepared: Vec<Prepared>, stats: &Stats) -> Wiring {
        // Finished tasks (removed sinks that drained) need not be kept.
        self.tasks.retain(|t| !t.is_finished());
        let mut w = Wiring::default();
        for p in prepared {
            if p.counted {
                stats.register_sink(p.stats.clone());
            }
            if p.built.scrape.is_some() {
                w.scrape = p.built.scrape.clone();
            }
            let mut queue = None;
            if let Some(sink) = p.built.sink {
                let (tx, rx) = mpsc::channel(p.queue);
                if p.events {
                    w.events.push(EventOut {
                        name: p.name.clone(),
                        tx: tx.clone(),
                        stats: p.stats.clone(),
                    });
                }
                match p.input {
                    Input::Raw => w.raw.push((p.name.clone(), tx)),
                    Input::Flush => {
                        queue = Some(SinkQueue {
                            tx,
                            stats: p.stats.clone(),
                        })
                    }
                }
                self.tasks
                    .push(spawn(sink, p.factory, rx, p.stats.clone(), stats));
            }
            if queue.is_some() || p.built.observer.is_some() {
                w.flush.push(Output {
                    name: p.name,
                    queue,
                    observer: p.built.observer,
                });
            }
        }
        w
    }

    /// Wait for a task that is not a sink's (a replaced relay draining) at
    /// shutdown too.
    pub fn track(&mut self, t: JoinHandle<()>) {
        self.tasks.push(t);
    }

    /// Every task, for the shutdown to wait on.
    pub fn take_tasks(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.tasks)
    }
}

/// Run a sink on its queue under the supervisor (restarted from `factory`
/// if it panics); the task ends when the queue has closed and the sink has
/// delivered what it holds.
fn spawn(
    s: Box<dyn Sink>,
    factory: SinkFactory,
    rx: mpsc::Receiver<SinkMsg>,
    sink_stats: Arc<SinkStats>,
    stats: &Stats,
) -> JoinHandle<()> {
    let task = stats.task(&format!("sink/{}", s.name()));
    tracing::info!(sink = s.name(), "sink started");
    tokio::spawn(async move {
        crate::sink::supervise::run(s, factory, rx, sink_stats, task, Backoff::default()).await;
    })
}
