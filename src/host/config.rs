//! `[host]`: its table ([`RawHost`], whose `///` docs are the user docs)
//! and its validated settings ([`HostConfig`]).
//!
//! Imports, besides `host` itself: `check`, `stats`, `sys`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::{bad, check_nonzero, patterns, Bad, Pattern};

/// `[host]`: host statistics, collected like collectd's and emitted as
/// statsd gauges and counters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHost {
    /// Collect host statistics at all.
    pub enabled: bool,
    /// How often; unset: the flush interval.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// The start of every name; `{host}` is the short host name (dots
    /// made `_`).
    pub prefix: String,
    /// Per-device, per-interface, per-mount and per-process values as tags
    /// (`;device=sda`, and a `host` tag on every value) rather than as a
    /// node of the name (`.sda.`).
    pub tags: bool,
    /// CPU time by state, in percent over the interval.
    pub cpu: bool,
    /// Also per core (`cpu.core.*`).
    pub per_cpu: bool,
    /// Memory, in bytes and percent.
    pub memory: bool,
    /// Swap, in bytes and percent.
    pub swap: bool,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: bool,
    /// Space per mounted filesystem, and I/O per block device.
    pub disk: bool,
    /// Regular expressions: only mount points and devices that one of them
    /// matches are reported (`[]`: all).
    pub disk_include: Vec<String>,
    /// Regular expressions: mount points and devices that one of them
    /// matches are not reported.
    pub disk_exclude: Vec<String>,
    /// Bytes, packets, errors and drops per network interface.
    pub network: bool,
    /// Regular expressions: only interfaces that one matches (`[]`: all).
    pub network_include: Vec<String>,
    /// Regular expressions: interfaces that one matches are not reported.
    pub network_exclude: Vec<String>,
    /// Processes by state, and the `[[host.process]]` groups.
    pub processes: bool,
    /// Seconds since boot.
    pub uptime: bool,
    /// statsyard's own process: CPU, memory, open files, threads.
    pub statsyard: bool,
    /// Process groups to report on their own: CPU, memory, open files,
    /// threads and count of the processes that match.
    pub process: Vec<RawProcess>,
}

impl Default for RawHost {
    fn default() -> Self {
        RawHost {
            enabled: false,
            interval: None,
            prefix: "host.{host}".into(),
            tags: true,
            cpu: true,
            per_cpu: false,
            memory: true,
            swap: true,
            load: true,
            disk: true,
            disk_include: Vec::new(),
            disk_exclude: vec!["^loop[0-9]".into(), "^ram[0-9]".into()],
            network: true,
            network_include: Vec::new(),
            network_exclude: Vec::new(),
            processes: true,
            uptime: true,
            statsyard: true,
            process: Vec::new(),
        }
    }
}

/// A `[[host.process]]` group.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    /// The group's name in the metric names; without `pattern`, also the
    /// command name (`comm`, as `ps -e` shows it) processes must have.
    pub name: String,
    /// A regular expression searched for in the command line instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// How a process group is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// The command name.
    Comm(String),
    /// A regular expression in the command line.
    Cmdline(Pattern),
}

/// A process group, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessGroup {
    pub name: String,
    pub matches: Match,
}

/// Mount points, devices or interfaces to report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
}

impl Filter {
    /// Whether `name` is reported.
    pub fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.is_match(name)))
            && !self.exclude.iter().any(|p| p.is_match(name))
    }
}

/// `[host]`, validated; `None` in the config when it is off.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    pub interval: Duration,
    /// `prefix` with `{host}` replaced.
    pub prefix: String,
    /// The short host name, for `{host}` and the `host` tag.
    pub hostname: String,
    pub tags: bool,
    pub cpu: bool,
    pub per_cpu: bool,
    pub memory: bool,
    pub swap: bool,
    pub load: bool,
    pub disk: bool,
    pub disk_filter: Filter,
    pub network: bool,
    pub network_filter: Filter,
    pub processes: bool,
    pub groups: Vec<ProcessGroup>,
    pub uptime: bool,
    pub statsyard: bool,
}

impl HostConfig {
    /// Check `raw`; `interval` is the flush interval (the default).
    pub fn validate(raw: &RawHost, interval: Duration) -> Result<Option<HostConfig>, Bad> {
        if !raw.enabled {
            return Ok(None);
        }
        let every = raw.interval.unwrap_or(interval);
        check_nonzero(every).map_err(|r| bad("host.interval", r))?;
        let hostname = short_hostname();
        let prefix = raw.prefix.replace("{host}", &hostname);
        if prefix.is_empty()
            || prefix.starts_with('.')
            || prefix.ends_with('.')
            || prefix.contains("..")
            || prefix.contains([';', ' ', '\t'])
        {
            return Err(bad(
                "host.prefix",
                format!(
                    "{:?}: a dotted name without spaces or `;` (e.g. \"host.{{host}}\")",
                    raw.prefix
                ),
            ));
        }
        let mut groups = Vec::with_capacity(raw.process.len());
        for (i, p) in raw.process.iter().enumerate() {
            if p.name.is_empty() || p.name.contains([';', ' ', '.']) {
                return Err(bad(
                    format!("host.process[{i}].name"),
                    "must be a non-empty name without `.`, `;` or spaces",
                ));
            }
            if groups.iter().any(|g: &ProcessGroup| g.name == p.name) {
                return Err(bad(
                    format!("host.process[{i}].name"),
                    format!("{:?} is listed twice", p.name),
                ));
            }
            let matches = match &p.pattern {
                None => Match::Comm(p.name.clone()),
                Some(re) => Match::Cmdline(
                    Pattern::new(re).map_err(|r| bad(format!("host.process[{i}].pattern"), r))?,
                ),
            };
            groups.push(ProcessGroup {
                name: p.name.clone(),
                matches,
            });
        }
        Ok(Some(HostConfig {
            interval: every,
            prefix,
            hostname,
            tags: raw.tags,
            cpu: raw.cpu,
            per_cpu: raw.per_cpu,
            memory: raw.memory,
            swap: raw.swap,
            load: raw.load,
            disk: raw.disk,
            disk_filter: Filter {
                include: patterns(&raw.disk_include, "host.disk_include")?,
                exclude: patterns(&raw.disk_exclude, "host.disk_exclude")?,
            },
            network: raw.network,
            network_filter: Filter {
                include: patterns(&raw.network_include, "host.network_include")?,
                exclude: patterns(&raw.network_exclude, "host.network_exclude")?,
            },
            processes: raw.processes,
            groups,
            uptime: raw.uptime,
            statsyard: raw.statsyard,
        }))
    }
}

/// The host name up to its first dot ([`crate::sys::short_hostname`]), `_`
/// for anything but letters, digits, `-` and `_` (so it is one node of a
/// Graphite name).
pub fn short_hostname() -> String {
    let clean = crate::stats::render::graphite_node(&crate::sys::short_hostname());
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}
