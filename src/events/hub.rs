//! The [`Hub`]: where every event goes. It numbers it, keeps it in a
//! bounded ring for `GET /api/events`, and offers it to the queue of every
//! output that takes events; it also keeps the latest state of each service
//! check, bounded, for `GET /api/checks`.
//!
//! Events are few (a deploy, an alert, a host going dark), so one lock
//! around the ring is enough; nothing here is on the metric path. Handing
//! an event to an output never waits: a full queue drops it and counts it
//! in that output's `queue_dropped`, as a flush would be.
//!
//! The hub holds a sender of each output's queue, so the runtime replaces
//! the list when a reload removes an output ([`Hub::set_outputs`]) and
//! empties it at shutdown ([`Hub::close`]), or the output would never see
//! its queue close.
//!
//! Imports, besides `events` itself: `sink`, `stats`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::event::{CheckRecord, Event};
use crate::sink::SinkMsg;
use crate::stats::collector::EventStats;
use crate::stats::{incr, SinkStats};

/// Events the ring keeps by default (`[events] keep`).
pub const DEFAULT_KEEP: usize = 1000;
/// Service checks listed at most by default (`[events] max_checks`).
pub const DEFAULT_MAX_CHECKS: usize = 10_000;

/// An output that takes events: its name, its queue, its counters.
#[derive(Clone)]
pub struct EventOut {
    pub name: String,
    pub tx: mpsc::Sender<SinkMsg>,
    pub stats: Arc<SinkStats>,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    keep: usize,
    next_id: u64,
}

struct Checks {
    by_key: HashMap<String, CheckRecord>,
    max: usize,
}

/// Events and service checks; one per server, shared by every listener,
/// liveness, the outputs' wiring and the HTTP API.
pub struct Hub {
    ring: Mutex<Ring>,
    checks: Mutex<Checks>,
    outs: RwLock<Arc<[EventOut]>>,
    stats: Arc<EventStats>,
}

impl Hub {
    pub fn new(stats: Arc<EventStats>) -> Hub {
        Hub {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                keep: DEFAULT_KEEP,
                next_id: 1,
            }),
            checks: Mutex::new(Checks {
                by_key: HashMap::new(),
                max: DEFAULT_MAX_CHECKS,
            }),
            outs: RwLock::new(Arc::from(Vec::new())),
            stats,
        }
    }

    /// `[events] keep` and `max_checks` (start, reload). A smaller ring
    /// drops its oldest events now; checks past a smaller bound stay listed
    /// until they are replaced.
    pub fn set_limits(&self, keep: usize, max_checks: usize) {
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        r.keep = keep;
        while r.events.len() > keep {
            r.events.pop_front();
        }
        self.stats
            .events_kept
            .store(r.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(r);
        self.checks.lock().unwrap_or_else(|e| e.into_inner()).max = max_checks;
    }

    /// Number `e`, keep it, and offer it to every output that takes events.
    pub fn publish(&self, mut e: Event) -> Arc<Event> {
        let e = {
            let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            e.id = r.next_id;
            r.next_id += 1;
            let e = Arc::new(e);
            if r.keep > 0 {
                if r.events.len() >= r.keep {
                    r.events.pop_front();
                }
                r.events.push_back(e.clone());
            }
            self.stats
                .events_kept
                .store(r.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
            e
        };
        if e.is_own() {
            incr(&self.stats.events_own, 1);
        } else {
            incr(&self.stats.events_received, 1);
        }
        let outs = self.outs.read().unwrap_or_else(|e| e.into_inner()).clone();
        for o in outs.iter() {
            match o.tx.try_send(SinkMsg::Event(e.clone())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                    incr(&o.stats.queue_dropped, 1);
                }
            }
        }
        e
    }

    /// The latest state of a service check.
    pub fn record_check(&self, c: CheckRecord) {
        incr(&self.stats.checks_received, 1);
        let mut t = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = t.by_key.get_mut(&c.key) {
            *old = c;
            return;
        }
        if t.by_key.len() >= t.max {
            incr(&self.stats.checks_over_limit, 1);
            return;
        }
        t.by_key.insert(c.key.clone(), c);
        self.stats
            .checks_kept
            .store(t.by_key.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The kept events with an id above `since`, oldest first, at most
    /// `limit` (the newest ones when there are more).
    pub fn events(&self, since: u64, limit: usize) -> Vec<Arc<Event>> {
        let r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let newer: Vec<Arc<Event>> = r.events.iter().filter(|e| e.id > since).cloned().collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).collect()
    }

    /// Every listed service check, by key.
    pub fn checks(&self) -> Vec<CheckRecord> {
        let t = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<CheckRecord> = t.by_key.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// The outputs that take events now.
    pub fn outputs(&self) -> Arc<[EventOut]> {
        self.outs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the outputs (start, reload).
    pub fn set_outputs(&self, outs: Vec<EventOut>) {
        *self.outs.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(outs);
    }

    /// Let go of every output's queue (shutdown, after the last event).
    pub fn close(&self) {
        self.set_outputs(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Origin;
    use crate::parse::event::{AlertType, Priority};

    fn ev(title: &str) -> Event {
        Event {
            id: 0,
            received: 1,
            timestamp: 1,
            title: title.into(),
            text: String::new(),
            host: None,
            aggregation_key: None,
            priority: Priority::Normal,
            source_type: None,
            alert_type: AlertType::Info,
            tags: Vec::new(),
            origin: Origin::Liveness,
        }
    }

    #[tokio::test]
    async fn ring_is_bounded_and_outputs_get_every_event() {
        let hub = Hub::new(Arc::default());
        hub.set_limits(2, 1);
        let (tx, mut rx) = mpsc::channel(1);
        let stats = Arc::new(SinkStats::default());
        hub.set_outputs(vec![EventOut {
            name: "console".into(),
            tx,
            stats: stats.clone(),
        }]);
        for t in ["a", "b", "c"] {
            hub.publish(ev(t));
        }
        let kept: Vec<(u64, String)> = hub
            .events(0, 10)
            .iter()
            .map(|e| (e.id, e.title.clone()))
            .collect();
        assert_eq!(kept, vec![(2, "b".into()), (3, "c".into())]);
        assert_eq!(hub.events(2, 10).len(), 1);
        assert_eq!(hub.events(0, 1)[0].title, "c");
        // The queue holds one: the other two were dropped and counted.
        let Some(SinkMsg::Event(first)) = rx.recv().await else {
            panic!()
        };
        assert_eq!(first.title, "a");
        assert_eq!(crate::stats::get(&stats.queue_dropped), 2);
        hub.close();
        assert!(
            rx.recv().await.is_none(),
            "the queue closes with the hub's list"
        );
    }
}
