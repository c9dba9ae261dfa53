//! [`Writer`]: turns the collector's readings into statsd values in a
//! shard, named as `[host]` says: `<prefix>.<module>.<metric>`, with a
//! label either as a tag (`;device=sda`, plus `;host=<hostname>` on every
//! value) or as a node of the name (`<prefix>.<module>.sda.<metric>`).
//!
//! Imports, besides `host` itself: `aggregate`, `metric`.

use crate::aggregate::{Inserted, Shard};
use crate::metric::{MetricRef, MetricType, Value};

/// Writes one collection's values into a shard.
pub struct Writer<'s> {
    shard: &'s mut Shard,
    prefix: &'s str,
    /// The host name, when values carry tags.
    host: Option<&'s str>,
    key: String,
    /// Values written, and refused by a series limit.
    pub written: u64,
    pub refused: u64,
}

impl<'s> Writer<'s> {
    pub fn new(shard: &'s mut Shard, prefix: &'s str, host: Option<&'s str>) -> Writer<'s> {
        Writer {
            shard,
            prefix,
            host,
            key: String::with_capacity(128),
            written: 0,
            refused: 0,
        }
    }

    /// A gauge `<prefix>.<name>`.
    pub fn gauge(&mut self, name: &str, v: f64) {
        self.put(name, None, MetricType::Gauge, v);
    }

    /// A gauge of one device, interface, mount or group.
    pub fn gauge_of(&mut self, name: &str, label: (&str, &str), v: f64) {
        self.put(name, Some(label), MetricType::Gauge, v);
    }

    /// A counter's growth since the last collection.
    pub fn count_of(&mut self, name: &str, label: (&str, &str), v: f64) {
        self.put(name, Some(label), MetricType::Counter, v);
    }

    fn put(&mut self, name: &str, label: Option<(&str, &str)>, kind: MetricType, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.key.clear();
        self.key.push_str(self.prefix);
        self.key.push('.');
        match (label, self.host) {
            (Some((k, value)), Some(host)) => {
                self.key.push_str(name);
                // Tags in bytewise order, as canonical keys have them.
                let mut tags = [(k, clean(value, false)), ("host", clean(host, false))];
                tags.sort();
                for (k, v) in tags {
                    self.key.push(';');
                    self.key.push_str(k);
                    self.key.push('=');
                    self.key.push_str(&v);
                }
            }
            (Some((_, value)), None) => {
                // `disk.used` of `sda1` is `disk.sda1.used`.
                let (module, metric) = name.rsplit_once('.').unwrap_or(("", name));
                if !module.is_empty() {
                    self.key.push_str(module);
                    self.key.push('.');
                }
                self.key.push_str(&clean(value, true));
                self.key.push('.');
                self.key.push_str(metric);
            }
            (None, Some(host)) => {
                self.key.push_str(name);
                self.key.push_str(";host=");
                self.key.push_str(&clean(host, false));
            }
            (None, None) => self.key.push_str(name),
        }
        let m = MetricRef {
            key: self.key.as_bytes(),
            kind,
            value: Value::Number(v),
            sample_rate: 1.0,
            timestamp: None,
        };
        match self.shard.insert(&m) {
            Inserted::Ok => self.written += 1,
            Inserted::Refused(_) => self.refused += 1,
        }
    }
}

/// A label value that Graphite and the statsd key format can carry: no
/// whitespace, `;` or `=`; as a name node (`node`), no `.` or `/` either
/// (the mount point `/var/lib` is the node `var-lib`, `/` is `root`, as
/// collectd's df plugin names them).
pub fn clean(v: &str, node: bool) -> String {
    if node && v == "/" {
        return "root".into();
    }
    let v = if node { v.trim_start_matches('/') } else { v };
    v.chars()
        .map(|c| match c {
            c if c.is_whitespace() || c == ';' || c == '=' => '_',
            '/' if node => '-',
            '.' if node => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Registry;

    fn keys(host: Option<&str>) -> Vec<String> {
        let mut shard = Shard::default();
        let mut w = Writer::new(&mut shard, "host.web1", host);
        w.gauge("memory.used", 1.0);
        w.gauge_of("disk.used", ("mount", "/var/lib"), 2.0);
        w.gauge_of("disk.used", ("mount", "/"), 3.0);
        w.count_of("network.rx_bytes", ("interface", "eth0.100"), 4.0);
        w.gauge("load.1", f64::NAN);
        assert_eq!(w.written, 4);
        let mut reg = Registry::new(&Default::default());
        reg.merge(shard.take());
        let mut k: Vec<String> = reg
            .gauges()
            .map(|(k, _)| k.to_string())
            .chain(reg.counters().map(|(k, _)| k.to_string()))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn names_with_and_without_tags() {
        assert_eq!(
            keys(None),
            vec![
                "host.web1.disk.root.used",
                "host.web1.disk.var-lib.used",
                "host.web1.memory.used",
                "host.web1.network.eth0_100.rx_bytes",
            ]
        );
        assert_eq!(
            keys(Some("web1")),
            vec![
                "host.web1.disk.used;host=web1;mount=/",
                "host.web1.disk.used;host=web1;mount=/var/lib",
                "host.web1.memory.used;host=web1",
                "host.web1.network.rx_bytes;host=web1;interface=eth0.100",
            ]
        );
    }
}
