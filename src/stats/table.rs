//! The shape of a self-metric table: one row per counter of a stats struct,
//! saying what it is called in each format and how to read it. Every format
//! (`/metrics`, `/api/stats`, Graphite self-metrics, the admin `stats`
//! command) renders from these rows ([`super::render`]), so a counter added
//! to a table shows up everywhere at once. A leaf: it knows no stats struct.

/// A Prometheus metric type, as self-metrics use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (until a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// 0 or 1: a gauge on `/metrics`, `false`/`true` in JSON.
    Flag,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::Flag => "gauge",
        }
    }
}

/// The formats a row appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Show {
    /// `/metrics`.
    pub prom: bool,
    /// `/api/stats`.
    pub json: bool,
    /// The flush's `<prefix_stats>.statsyard.*` lines (counters as
    /// per-interval deltas, gauges as they are), or for the relay, the
    /// carbon-c-relay lines it sends through itself.
    pub graphite: bool,
    /// The admin console's `stats` command.
    pub admin: bool,
}

/// One counter of a stats struct `S`.
pub struct Metric<S: ?Sized> {
    /// Its name in `/api/stats`, in Graphite self-metrics and in the admin
    /// console.
    pub key: &'static str,
    /// Its name on `/metrics` after `statsyard_` (and the group's prefix),
    /// `_total` included for counters.
    pub prom: &'static str,
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    pub value: fn(&S) -> u64,
    /// `/metrics` shows `value * prom_scale` (1e-6 turns microseconds into
    /// the seconds Prometheus expects).
    pub prom_scale: f64,
    /// A fixed label on `/metrics` (`reason="nan_inf"`): rows that share a
    /// Prometheus name are one family, one sample each.
    pub label: Option<(&'static str, &'static str)>,
    pub show: Show,
}

impl<S: ?Sized> Metric<S> {
    /// A row on `/metrics` and in `/api/stats`.
    pub const fn new(
        key: &'static str,
        prom: &'static str,
        kind: Kind,
        help: &'static str,
        value: fn(&S) -> u64,
    ) -> Metric<S> {
        Metric {
            key,
            prom,
            kind,
            help,
            value,
            prom_scale: 1.0,
            label: None,
            show: Show {
                prom: true,
                json: true,
                graphite: false,
                admin: false,
            },
        }
    }

    /// Also in Graphite self-metrics.
    pub const fn graphite(mut self) -> Metric<S> {
        self.show.graphite = true;
        self
    }

    /// Also in the admin console's `stats`.
    pub const fn admin(mut self) -> Metric<S> {
        self.show.admin = true;
        self
    }

    /// Only in Graphite self-metrics (a sum that the other formats show per
    /// instance).
    pub const fn graphite_only(mut self) -> Metric<S> {
        self.show = Show {
            prom: false,
            json: false,
            graphite: true,
            admin: false,
        };
        self
    }

    /// One sample of a family that has a label per row.
    pub const fn labelled(mut self, name: &'static str, value: &'static str) -> Metric<S> {
        self.label = Some((name, value));
        self
    }

    /// Scaled on `/metrics`.
    pub const fn scaled(mut self, scale: f64) -> Metric<S> {
        self.prom_scale = scale;
        self
    }
}
