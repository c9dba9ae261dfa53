//! [`Collector`]: one reading of every enabled module per interval, through
//! the `procfs` crate (/proc) and `statvfs` (filesystems). Counters (disk
//! I/O, network) and percentages (CPU) are differences between two
//! readings, so the first collection only primes them.
//!
//! A module whose source cannot be read (no /proc/diskstats in a container,
//! a kernel without /proc/loadavg) is turned off with one warning and
//! counted (`modules_disabled`), not retried and logged every interval. A
//! process that exits while it is read, or a mount point that cannot be
//! stat'ed, is only skipped.
//!
//! Imports nothing of the crate outside `host`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use procfs::prelude::*;
use procfs::process::Process;

use super::config::{HostConfig, Match};
use super::write::Writer;

/// The modules, each turned off on its first read error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    Cpu,
    Memory,
    Load,
    DiskSpace,
    DiskIo,
    Network,
    Processes,
    Uptime,
    Statsyard,
}

/// CPU ticks by state, as /proc/stat counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ticks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl Ticks {
    fn of(c: &procfs::CpuTime) -> Ticks {
        Ticks {
            user: c.user,
            nice: c.nice,
            system: c.system,
            idle: c.idle,
            iowait: c.iowait.unwrap_or(0),
            irq: c.irq.unwrap_or(0),
            softirq: c.softirq.unwrap_or(0),
            steal: c.steal.unwrap_or(0),
        }
    }

    /// Each state's share of the time between `before` and `self`, in
    /// percent (they add up to 100); `None` when no time passed.
    pub fn percent_since(&self, before: &Ticks) -> Option<[(&'static str, f64); 8]> {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
        let parts = [
            ("user", d(self.user, before.user)),
            ("nice", d(self.nice, before.nice)),
            ("system", d(self.system, before.system)),
            ("idle", d(self.idle, before.idle)),
            ("iowait", d(self.iowait, before.iowait)),
            ("irq", d(self.irq, before.irq)),
            ("softirq", d(self.softirq, before.softirq)),
            ("steal", d(self.steal, before.steal)),
        ];
        let total: f64 = parts.iter().map(|(_, v)| v).sum();
        if total <= 0.0 {
            return None;
        }
        Some(parts.map(|(n, v)| (n, v * 100.0 / total)))
    }
}

/// A process's CPU ticks, by pid and start time (a reused pid is another process).
type ProcTicks = HashMap<(i32, u64), u64>;

/// Everything one collection needs from the last.
pub struct Collector {
    config: HostConfig,
    off: Vec<Module>,
    cpu: Option<(Ticks, Vec<Ticks>)>,
    disks: HashMap<String, [u64; 7]>,
    nets: HashMap<String, [u64; 8]>,
    procs: ProcTicks,
    own: Option<u64>,
    last: Option<Instant>,
    /// Modules turned off in this collection (for the counter).
    pub newly_off: u64,
}

impl Collector {
    pub fn new(config: HostConfig) -> Collector {
        Collector {
            config,
            off: Vec::new(),
            cpu: None,
            disks: HashMap::new(),
            nets: HashMap::new(),
            procs: HashMap::new(),
            own: None,
            last: None,
            newly_off: 0,
        }
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// One reading of every enabled module into `w`.
    pub fn collect(&mut self, w: &mut Writer<'_>) {
        let now = Instant::now();
        let elapsed = self.last.map(|t| now.duration_since(t));
        self.last = Some(now);
        let c = self.config.clone();
        let runs = [
            (Module::Cpu, c.cpu),
            (Module::Memory, c.memory || c.swap),
            (Module::Load, c.load),
            (Module::DiskSpace, c.disk),
            (Module::DiskIo, c.disk),
            (Module::Network, c.network),
            (Module::Processes, c.processes),
            (Module::Uptime, c.uptime),
            (Module::Statsyard, c.statsyard),
        ];
        let on: Vec<Module> = runs.iter().filter(|(_, on)| *on).map(|(m, _)| *m).collect();
        self.each(&on, |this, m| match m {
            Module::Cpu => this.cpu(w),
            Module::Memory => memory(&c, w),
            Module::Load => load(w),
            Module::DiskSpace => disk_space(&c, w),
            Module::DiskIo => this.disk_io(w),
            Module::Network => this.network(w),
            Module::Processes => this.processes(w, elapsed),
            Module::Uptime => uptime(w),
            Module::Statsyard => this.statsyard(w, elapsed),
        });
    }

    /// Run `read` for each module of `modules` that is not off; turn off,
    /// with one warning, each one whose read fails.
    fn each<E: std::fmt::Display>(
        &mut self,
        modules: &[Module],
        mut read: impl FnMut(&mut Self, Module) -> Result<(), E>,
    ) {
        for &m in modules {
            if self.off.contains(&m) {
                continue;
            }
            if let Err(e) = read(self, m) {
                tracing::warn!(module = ?m, error = %e, "host statistics: cannot read; this module is off until the next restart or reload that changes [host]");
                self.off.push(m);
                self.newly_off += 1;
            }
        }
    }

    fn cpu(&mut self, w: &mut Writer<'_>) -> procfs::ProcResult<()> {
        let k = procfs::KernelStats::current()?;
        let total = Ticks::of(&k.total);
        let cores: Vec<Ticks> = k.cpu_time.iter().map(Ticks::of).collect();
        if let Some((t0, c0)) = &self.cpu {
            if let Some(p) = total.percent_since(t0) {
                for (state, v) in p {
                    w.gauge(&format!("cpu.{state}"), v);
                }
            }
            if self.config.per_cpu {
                for (i, (now, before)) in cores.iter().zip(c0).enumerate() {
                    let Some(p) = now.percent_since(before) else {
                        continue;
                    };
                    let core = i.to_string();
                    for (state, v) in p {
                        w.gauge_of(&format!("cpu.core.{state}"), ("cpu", &core), v);
                    }
                }
            }
        }
        self.cpu = Some((total, cores));
        Ok(())
    }

    fn disk_io(&mut self, w: &mut Writer<'_>) -> procfs::ProcResult<()> {
        const NAMES: [&str; 7] = [
            "reads",
            "writes",
            "read_bytes",
            "write_bytes",
            "read_time",
            "write_time",
            "io_time",
        ];
        let mut next = HashMap::new();
        for d in procfs::diskstats()? {
            if !self.config.disk_filter.allows(&d.name) {
                continue;
            }
            // Sectors are 512 bytes in /proc/diskstats whatever the device's.
            let now = [
                d.reads,
                d.writes,
                d.sectors_read * 512,
                d.sectors_written * 512,
                d.time_reading,
                d.time_writing,
                d.time_in_progress,
            ];
            growth(
                w,
                self.disks.get(&d.name),
                now,
                "disk",
                &NAMES,
                ("device", &d.name),
            );
            next.insert(d.name, now);
        }
        self.disks = next;
        Ok(())
    }

    fn network(&mut self, w: &mut Writer<'_>) -> procfs::ProcResult<()> {
        const NAMES: [&str; 8] = [
            "rx_bytes",
            "tx_bytes",
            "rx_packets",
            "tx_packets",
            "rx_errors",
            "tx_errors",
            "rx_drops",
            "tx_drops",
        ];
        let mut next = HashMap::new();
        let mut devs: Vec<_> = procfs::net::dev_status()?.into_values().collect();
        devs.sort_by(|a, b| a.name.cmp(&b.name));
        for d in devs {
            if !self.config.network_filter.allows(&d.name) {
                continue;
            }
            let now = [
                d.recv_bytes,
                d.sent_bytes,
                d.recv_packets,
                d.sent_packets,
                d.recv_errs,
                d.sent_errs,
                d.recv_drop,
                d.sent_drop,
            ];
            growth(
                w,
                self.nets.get(&d.name),
                now,
                "network",
                &NAMES,
                ("interface", &d.name),
            );
            next.insert(d.name, now);
        }
        self.nets = next;
        Ok(())
    }

    /// Processes by state, and each `[[host.process]]` group.
    fn processes(
        &mut self,
        w: &mut Writer<'_>,
        elapsed: Option<Duration>,
    ) -> procfs::ProcResult<()> {
        let mut states: [(&str, u64); 6] = [
            ("running", 0),
            ("sleeping", 0),
            ("blocked", 0),
            ("zombie", 0),
            ("stopped", 0),
            ("idle", 0),
        ];
        let (mut total, mut threads) = (0u64, 0u64);
        let groups = &self.config.groups;
        let mut per_group: Vec<Group> = vec![Group::default(); groups.len()];
        let mut ticks: ProcTicks = HashMap::new();
        for p in procfs::process::all_processes()? {
            // Gone between the listing and the read: not an error.
            let Ok(p) = p else { continue };
            let Ok(stat) = p.stat() else { continue };
            total += 1;
            threads += stat.num_threads.max(0) as u64;
            let slot = match stat.state {
                'R' => Some(0),
                'S' => Some(1),
                'D' => Some(2),
                'Z' => Some(3),
                'T' | 't' => Some(4),
                'I' => Some(5),
                _ => None,
            };
            if let Some(i) = slot {
                states[i].1 += 1;
            }
            if groups.is_empty() {
                continue;
            }
            let mut cmdline: Option<String> = None;
            for (g, out) in groups.iter().zip(per_group.iter_mut()) {
                let hit = match &g.matches {
                    Match::Comm(name) => stat.comm == *name,
                    Match::Cmdline(re) => {
                        let line = cmdline.get_or_insert_with(|| {
                            p.cmdline().map(|v| v.join(" ")).unwrap_or_default()
                        });
                        !line.is_empty() && re.is_match(line)
                    }
                };
                if hit {
                    let t = stat.utime + stat.stime;
                    ticks.insert((stat.pid, stat.starttime), t);
                    out.add(
                        &p,
                        &stat,
                        t,
                        self.procs.get(&(stat.pid, stat.starttime)).copied(),
                    );
                }
            }
        }
        for (name, n) in states {
            w.gauge(&format!("processes.{name}"), n as f64);
        }
        w.gauge("processes.total", total as f64);
        w.gauge("processes.threads", threads as f64);
        let (tps, page) = (
            procfs::ticks_per_second() as f64,
            procfs::page_size() as f64,
        );
        for (g, got) in groups.iter().zip(&per_group) {
            let label = ("process", g.name.as_str());
            w.gauge_of("process.count", label, got.count as f64);
            w.gauge_of("process.rss", label, got.rss_pages as f64 * page);
            w.gauge_of("process.threads", label, got.threads as f64);
            w.gauge_of("process.open_files", label, got.fds as f64);
            if let Some(e) = elapsed.filter(|e| !e.is_zero()) {
                w.gauge_of(
                    "process.cpu",
                    label,
                    got.ticks as f64 / tps / e.as_secs_f64() * 100.0,
                );
            }
        }
        self.procs = ticks;
        Ok(())
    }

    /// statsyard's own process.
    fn statsyard(
        &mut self,
        w: &mut Writer<'_>,
        elapsed: Option<Duration>,
    ) -> procfs::ProcResult<()> {
        let me = Process::myself()?;
        let stat = me.stat()?;
        let t = stat.utime + stat.stime;
        if let (Some(before), Some(e)) = (self.own, elapsed.filter(|e| !e.is_zero())) {
            let tps = procfs::ticks_per_second() as f64;
            w.gauge(
                "statsyard.cpu",
                t.saturating_sub(before) as f64 / tps / e.as_secs_f64() * 100.0,
            );
        }
        self.own = Some(t);
        w.gauge("statsyard.rss", (stat.rss * procfs::page_size()) as f64);
        w.gauge("statsyard.threads", stat.num_threads as f64);
        if let Ok(n) = me.fd_count() {
            w.gauge("statsyard.open_files", n as f64);
        }
        Ok(())
    }
}

/// The counters `<module>.<names[i]>` of one device or interface: what
/// each of `now` grew by since `before` (nothing the first time, or for a
/// counter that went back, as when a device is replaced).
fn growth<const N: usize>(
    w: &mut Writer<'_>,
    before: Option<&[u64; N]>,
    now: [u64; N],
    module: &str,
    names: &[&str; N],
    label: (&str, &str),
) {
    let Some(before) = before else { return };
    for (i, name) in names.iter().enumerate() {
        if let Some(delta) = now[i].checked_sub(before[i]) {
            w.count_of(&format!("{module}.{name}"), label, delta as f64);
        }
    }
}

/// One `[[host.process]]` group's sums.
#[derive(Debug, Clone, Default)]
struct Group {
    count: u64,
    rss_pages: u64,
    threads: u64,
    fds: u64,
    /// CPU ticks since the last collection, of processes seen both times.
    ticks: u64,
}

impl Group {
    fn add(&mut self, p: &Process, stat: &procfs::process::Stat, now: u64, before: Option<u64>) {
        self.count += 1;
        self.rss_pages += stat.rss;
        self.threads += stat.num_threads.max(0) as u64;
        self.fds += p.fd_count().unwrap_or(0) as u64;
        if let Some(b) = before {
            self.ticks += now.saturating_sub(b);
        }
    }
}

fn memory(c: &HostConfig, w: &mut Writer<'_>) -> procfs::ProcResult<()> {
    let m = procfs::Meminfo::current()?;
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    if c.memory {
        // As `free` counts it: what is not available to a new program.
        let available = m.mem_available.unwrap_or(m.mem_free + m.buffers + m.cached);
        let used = m.mem_total.saturating_sub(available);
        w.gauge("memory.total", m.mem_total as f64);
        w.gauge("memory.used", used as f64);
        w.gauge("memory.free", m.mem_free as f64);
        w.gauge("memory.available", available as f64);
        w.gauge("memory.buffers", m.buffers as f64);
        w.gauge("memory.cached", m.cached as f64);
        w.gauge("memory.used_percent", pct(used, m.mem_total));
    }
    if c.swap {
        let used = m.swap_total.saturating_sub(m.swap_free);
        w.gauge("swap.total", m.swap_total as f64);
        w.gauge("swap.used", used as f64);
        w.gauge("swap.free", m.swap_free as f64);
        w.gauge("swap.used_percent", pct(used, m.swap_total));
    }
    Ok(())
}

fn load(w: &mut Writer<'_>) -> procfs::ProcResult<()> {
    let l = procfs::LoadAverage::current()?;
    w.gauge("load.1", l.one as f64);
    w.gauge("load.5", l.five as f64);
    w.gauge("load.15", l.fifteen as f64);
    Ok(())
}

fn uptime(w: &mut Writer<'_>) -> procfs::ProcResult<()> {
    w.gauge("uptime", procfs::Uptime::current()?.uptime);
    Ok(())
}

/// Space per mounted filesystem, as `df` shows it: filesystems with blocks,
/// each once (a filesystem mounted at several places at its shortest mount
/// point).
fn disk_space(c: &HostConfig, w: &mut Writer<'_>) -> procfs::ProcResult<()> {
    for (mount, s) in filesystems(c)? {
        let frsize = s.f_frsize;
        let total = s.f_blocks * frsize;
        let used = s.f_blocks.saturating_sub(s.f_bfree) * frsize;
        let avail = s.f_bavail * frsize;
        let label = ("mount", mount.as_str());
        w.gauge_of("disk.total", label, total as f64);
        w.gauge_of("disk.used", label, used as f64);
        w.gauge_of("disk.free", label, avail as f64);
        w.gauge_of(
            "disk.reserved",
            label,
            s.f_bfree.saturating_sub(s.f_bavail) as f64 * frsize as f64,
        );
        if used + avail > 0 {
            // df's Use%: of what a user can have, not of the whole.
            w.gauge_of(
                "disk.used_percent",
                label,
                used as f64 * 100.0 / (used + avail) as f64,
            );
        }
        w.gauge_of(
            "disk.inodes_used",
            label,
            s.f_files.saturating_sub(s.f_ffree) as f64,
        );
        w.gauge_of("disk.inodes_free", label, s.f_ffree as f64);
    }
    Ok(())
}

/// The filesystems `disk` reports, by mount point.
pub fn filesystems(c: &HostConfig) -> procfs::ProcResult<Vec<(String, rustix::fs::StatVfs)>> {
    let mut by_dev: HashMap<_, (String, rustix::fs::StatVfs)> = HashMap::new();
    for m in procfs::mounts()? {
        let mount = m.fs_file;
        if !c.disk_filter.allows(&mount) {
            continue;
        }
        let (Ok(st), Ok(vfs)) = (
            rustix::fs::stat(mount.as_str()),
            rustix::fs::statvfs(mount.as_str()),
        ) else {
            continue;
        };
        if vfs.f_blocks == 0 || !rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() {
            continue;
        }
        let dev = st.st_dev;
        match by_dev.get(&dev) {
            Some((m, _)) if m.len() <= mount.len() => {}
            _ => {
                by_dev.insert(dev, (mount, vfs));
            }
        }
    }
    let mut v: Vec<_> = by_dev.into_values().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_that_cannot_read_is_off_once() {
        let raw = crate::host::RawHost {
            enabled: true,
            ..Default::default()
        };
        let c = HostConfig::validate(&raw, Duration::from_secs(1))
            .unwrap()
            .unwrap();
        let mut col = Collector::new(c);
        let mut reads = Vec::new();
        for _ in 0..3 {
            col.each(&[Module::Load, Module::Uptime], |_, m| {
                reads.push(m);
                if m == Module::Load {
                    Err("no /proc/loadavg")
                } else {
                    Ok(())
                }
            });
        }
        assert_eq!(
            reads,
            [Module::Load, Module::Uptime, Module::Uptime, Module::Uptime]
        );
        assert_eq!(col.newly_off, 1);
    }

    /// Two real collections: the CPU states of the second add up to 100.
    #[test]
    fn real_cpu_states_add_up() {
        let raw = crate::host::RawHost {
            enabled: true,
            prefix: "t".into(),
            tags: false,
            ..Default::default()
        };
        let c = HostConfig::validate(&raw, Duration::from_secs(1))
            .unwrap()
            .unwrap();
        let mut col = Collector::new(c);
        let mut shard = crate::aggregate::Shard::default();
        for _ in 0..2 {
            let mut w = Writer::new(&mut shard, "t", None);
            col.collect(&mut w);
            let burn = Instant::now();
            while burn.elapsed() < Duration::from_millis(50) {
                std::hint::black_box(0u64);
            }
        }
        let mut reg = crate::aggregate::Registry::new(&Default::default());
        reg.merge(shard.take());
        let sum: f64 = reg
            .gauges()
            .filter(|(k, _)| {
                k.as_bytes().starts_with(b"t.cpu.") && !k.as_bytes().starts_with(b"t.cpu.core.")
            })
            .map(|(_, v)| v)
            .sum();
        assert!((sum - 100.0).abs() < 1e-6, "{sum}");
        assert_eq!(reg.gauge(b"t.memory.total").map(|v| v > 0.0), Some(true));
    }

    #[test]
    fn cpu_percentages_add_up() {
        let a = Ticks {
            user: 100,
            idle: 100,
            ..Ticks::default()
        };
        let b = Ticks {
            user: 130,
            system: 10,
            idle: 160,
            ..a
        };
        let p = b.percent_since(&a).unwrap();
        let get = |n| p.iter().find(|(k, _)| *k == n).unwrap().1;
        assert_eq!(get("user"), 30.0);
        assert_eq!(get("system"), 10.0);
        assert_eq!(get("idle"), 60.0);
        assert!((p.iter().map(|(_, v)| v).sum::<f64>() - 100.0).abs() < 1e-9);
        assert_eq!(a.percent_since(&a), None);
    }
}
