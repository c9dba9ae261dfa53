//! The data that flows from the parser into aggregation. Pure data: no I/O,
//! no async, no knowledge of config.
//!
//! A series is identified by its *canonical key*: the sanitised metric name,
//! then each tag as `;tag`, tags sorted bytewise. `foo;env=prod;host=a` is the
//! key of `foo:1|c|#host:a,env:prod`, of `foo;host=a;env=prod:1|c` and of
//! `foo;env=prod:1|c|#host:a`. The same bytes are what Graphite receives after
//! the name, so the key needs no further encoding on the way out.
//!
//! A leaf: imports nothing of the crate; parse and aggregate both import it.

use std::fmt;

/// What kind of statsd metric a line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    /// `c`: summed over the interval, divided by the sample rate.
    Counter,
    /// `g`: last value wins, persistent across flushes; `+N`/`-N` are deltas.
    Gauge,
    /// `ms`: every sample kept (up to a bound) for percentiles.
    Timer,
    /// `h` (DogStatsD histogram): aggregated exactly like a timer.
    Histogram,
    /// `d` (DogStatsD distribution): aggregated exactly like a timer.
    Distribution,
    /// `s`: the number of distinct members seen in the interval.
    Set,
}

impl MetricType {
    /// How many types there are: the length of a table indexed by [`MetricType::index`].
    pub const COUNT: usize = 6;

    /// The type's place in a per-type table (`0..COUNT`, in declaration order).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The statsd wire name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "c",
            MetricType::Gauge => "g",
            MetricType::Timer => "ms",
            MetricType::Histogram => "h",
            MetricType::Distribution => "d",
            MetricType::Set => "s",
        }
    }

    /// `h` and `d` share the timer's aggregation and output.
    pub fn is_timer_like(self) -> bool {
        matches!(
            self,
            MetricType::Timer | MetricType::Histogram | MetricType::Distribution
        )
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value of one metric line, borrowed from the receive buffer (or from the
/// parser's scratch buffer when the key had to be rewritten).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A counter increment, timer sample, or absolute gauge value. Always finite.
    Number(f64),
    /// A gauge written with a leading `+` or `-`: added to the current value.
    GaugeDelta(f64),
    /// A set member, as the raw bytes the client sent.
    SetMember(&'a [u8]),
}

/// One parsed value, ready to aggregate. A line `a:1|c:2|ms` yields two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRef<'a> {
    /// The canonical key (see the module doc).
    pub key: &'a [u8],
    pub kind: MetricType,
    pub value: Value<'a>,
    /// `|@rate`, in (0, 1] for anything a client sends on purpose; 1.0 when absent.
    pub sample_rate: f64,
    /// DogStatsD `|T<unix seconds>`, when the client sent one. Aggregation
    /// currently files the value under the interval it arrived in.
    pub timestamp: Option<u64>,
}

/// An owned canonical key, allocated once per series and shared (not
/// copied) by the registry and every flush batch that names the series.
///
/// ```
/// use statsyard::metric::MetricKey;
/// let k = MetricKey::new(b"api.latency;env=prod;host=a");
/// assert_eq!(k.name(), b"api.latency");
/// assert_eq!(k.tags().collect::<Vec<_>>(), [&b"env=prod"[..], &b"host=a"[..]]);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey(std::sync::Arc<[u8]>);

impl MetricKey {
    pub fn new(bytes: &[u8]) -> Self {
        MetricKey(bytes.into())
    }

    /// The whole canonical key: `name;tag;tag`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name: everything before the first `;`.
    pub fn name(&self) -> &[u8] {
        match self.0.iter().position(|&b| b == b';') {
            Some(i) => &self.0[..i],
            None => &self.0,
        }
    }

    /// The tag part including its leading `;` (`;a=1;b=2`), or empty.
    pub fn tag_suffix(&self) -> &[u8] {
        match self.0.iter().position(|&b| b == b';') {
            Some(i) => &self.0[i..],
            None => &[],
        }
    }

    /// Each tag (`k=v`, or a bare `k`), in canonical order.
    pub fn tags(&self) -> impl Iterator<Item = &[u8]> {
        let suffix = self.tag_suffix();
        suffix.split(|&b| b == b';').filter(|t| !t.is_empty())
    }

    /// The key as text; bytes that are not UTF-8 (possible only when key
    /// sanitising is off) are replaced with U+FFFD, as the reference does.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl std::borrow::Borrow<[u8]> for MetricKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetricKey({:?})", self.to_string_lossy())
    }
}

impl fmt::Display for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts() {
        let k = MetricKey::new(b"foo.bar;a=1;b");
        assert_eq!(k.name(), b"foo.bar");
        assert_eq!(k.tag_suffix(), b";a=1;b");
        assert_eq!(k.tags().collect::<Vec<_>>(), vec![&b"a=1"[..], &b"b"[..]]);
        let plain = MetricKey::new(b"foo");
        assert_eq!(plain.name(), b"foo");
        assert!(plain.tag_suffix().is_empty());
        assert_eq!(plain.tags().count(), 0);
    }

    #[test]
    fn type_indexes_fill_a_table_of_count() {
        use MetricType::*;
        let all = [Counter, Gauge, Timer, Histogram, Distribution, Set];
        assert_eq!(all.len(), MetricType::COUNT);
        for (i, t) in all.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
