//! `[host]` over real sockets: what statsyard reports through a Graphite sink
//! and `/metrics`, compared with what the kernel says (/proc, `df`) over the
//! same time, within the tolerances stated at each assertion.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{config, graphite_config, secs, Graphite, Server};

/// The short host name, as `[host] prefix = "...{host}"` writes it.
fn hostname() -> String {
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let short = full.trim().split('.').next().unwrap_or("").to_string();
    short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A /proc/meminfo line, in bytes.
fn meminfo(key: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap();
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024.0
}

/// /proc/stat's `cpu` line: (idle + iowait, total) ticks.
fn cpu_ticks() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let f: Vec<f64> = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[3] + f[4], f.iter().sum())
}

/// Bytes received on `lo` so far.
fn lo_rx_bytes() -> f64 {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap();
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `df -B1 /`: (size, used, avail).
fn df_root() -> (f64, f64, f64) {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size,used,avail", "/"])
        .output()
        .expect("df runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

/// The first number of a /proc file (`/proc/loadavg`, `/proc/uptime`).
fn first_number(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap();
    num(text.split_whitespace().next().unwrap())
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// The value of the last line named `name`, waiting (10 s at most) for one.
fn last(g: &mut Graphite, name: &str) -> f64 {
    g.until(secs(10), |ls| ls.iter().any(|l| l.name == name));
    let l = g.seen.iter().rev().find(|l| l.name == name).unwrap();
    num(&l.value)
}

#[test]
fn host_stats_match_the_kernel() {
    let h = hostname();
    let p = format!("it.{h}");
    // `sleep` with an argument no other process has: the `[[host.process]]` group.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("1234.5")
        .spawn()
        .unwrap();
    let net0 = lo_rx_bytes();
    let mut graphite = Graphite::start();
    let s = Server::start(graphite_config(
        graphite.addr,
        500,
        r#"
[http]
address = "127.0.0.1:0"
[host]
enabled = true
prefix = "it.{host}"
per_cpu = true
[[host.process]]
name = "sleeper"
pattern = "^sleep 1234\\.5$"
"#,
    ));
    let g = |m: &str| format!("stats.gauges.{p}.{m};host={h}");

    // Memory: the total is the kernel's exactly; `used` (total - available)
    // within 5% of the total of what the kernel says when the line arrives
    // (other tests allocate and free meanwhile).
    let total = num(&graphite.value_of(&g("memory.total"), secs(10)));
    assert_eq!(total, meminfo("MemTotal"));
    let used = last(&mut graphite, &g("memory.used"));
    let kernel_used = meminfo("MemTotal") - meminfo("MemAvailable");
    assert!(
        (used - kernel_used).abs() <= 0.05 * total,
        "used {used} vs kernel {kernel_used}"
    );
    assert_eq!(
        num(&graphite.value_of(&g("swap.total"), secs(5))),
        meminfo("SwapTotal")
    );

    // Disk: `/` as df shows it, the size exactly, used and free within 1%
    // of the size (files come and go while the test runs).
    let (size, df_used, df_avail) = df_root();
    let label = |m: &str| format!("stats.gauges.{p}.{m};host={h};mount=/");
    assert_eq!(num(&graphite.value_of(&label("disk.total"), secs(5))), size);
    let used = last(&mut graphite, &label("disk.used"));
    let free = last(&mut graphite, &label("disk.free"));
    assert!(
        (used - df_used).abs() <= 0.01 * size,
        "disk used {used} vs df {df_used}"
    );
    assert!(
        (free - df_avail).abs() <= 0.01 * size,
        "disk free {free} vs df {df_avail}"
    );

    // Load within 1 + 25%, uptime within 2 s plus the interval.
    let load1: f64 = first_number("/proc/loadavg");
    let ours = num(&graphite.value_of(&g("load.1"), secs(5)));
    assert!(
        (ours - load1).abs() <= 1.0 + 0.25 * load1,
        "load {ours} vs {load1}"
    );
    let up: f64 = first_number("/proc/uptime");
    let ours = last(&mut graphite, &g("uptime"));
    assert!((ours - up).abs() <= 2.5, "uptime {ours} vs {up}");

    // Processes: the total within 25 (or 25%) of /proc's pids now.
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
                .is_ok()
        })
        .count() as f64;
    let ours = num(&graphite.value_of(&g("processes.total"), secs(5)));
    assert!(
        (ours - pids).abs() <= 25f64.max(0.25 * pids),
        "processes {ours} vs {pids}"
    );
    // The group: exactly our sleeper, one thread, its RSS within 50%.
    let grp = |m: &str| format!("stats.gauges.{p}.process.{m};host={h};process=sleeper");
    assert_eq!(num(&graphite.value_of(&grp("count"), secs(5))), 1.0);
    assert_eq!(last(&mut graphite, &grp("threads")), 1.0);
    let status = std::fs::read_to_string(format!("/proc/{}/status", sleeper.id())).unwrap();
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let rss = last(&mut graphite, &grp("rss"));
    assert!(
        (rss - rss_kb * 1024.0).abs() <= 0.5 * rss_kb * 1024.0,
        "rss {rss} vs {}",
        rss_kb * 1024.0
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", sleeper.id()))
        .unwrap()
        .count() as f64;
    assert_eq!(last(&mut graphite, &grp("open_files")), fds);

    // CPU: the mean idle (idle + iowait) of 8 intervals within 15 points of
    // the kernel's over the same 4 s (shifted by at most one interval). That
    // the states add up to 100 is checked in the library
    // (host::collect::tests), where one collection is read whole.
    let idle = g("cpu.idle");
    graphite.until(secs(10), |ls| ls.iter().any(|l| l.name == idle));
    let skip = graphite.seen.iter().filter(|l| l.name == idle).count();
    let (i0, t0) = cpu_ticks();
    graphite.until(secs(15), |ls| {
        ls.iter().filter(|l| l.name == idle).count() >= skip + 8
    });
    let (i1, t1) = cpu_ticks();
    let kernel_idle = (i1 - i0) * 100.0 / (t1 - t0);
    let ours: Vec<f64> = graphite
        .seen
        .iter()
        .filter(|l| l.name == idle)
        .skip(skip)
        .map(|l| num(&l.value))
        .collect();
    let waits: Vec<f64> = graphite
        .seen
        .iter()
        .filter(|l| l.name == g("cpu.iowait"))
        .skip(skip)
        .map(|l| num(&l.value))
        .collect();
    let mean = ours.iter().zip(&waits).map(|(a, b)| a + b).sum::<f64>() / ours.len() as f64;
    assert!(
        (mean - kernel_idle).abs() <= 15.0,
        "idle {mean} vs kernel {kernel_idle}"
    );

    // Per core (`per_cpu`): every core the kernel lists has its states,
    // each a percentage.
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cores: Vec<&str> = stat
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|c| c.strip_prefix("cpu").filter(|n| !n.is_empty()))
        .collect();
    assert!(!cores.is_empty());
    for n in &cores {
        let user = format!("stats.gauges.{p}.cpu.core.user;cpu={n};host={h}");
        let v = num(&graphite.value_of(&user, secs(5)));
        assert!((0.0..=100.0).contains(&v), "{user} {v}");
    }
    // Disk I/O per block device, labelled by a device /proc/diskstats has.
    let diskstats = std::fs::read_to_string("/proc/diskstats").unwrap();
    let reads = format!("stats_counts.{p}.disk.reads;device=");
    graphite.until(secs(5), |ls| ls.iter().any(|l| l.name.starts_with(&reads)));
    let device = graphite
        .seen
        .iter()
        .find_map(|l| l.name.strip_prefix(&reads))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
    assert!(
        diskstats
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(device.as_str())),
        "{device} not in /proc/diskstats"
    );

    // Network: 1 MiB over loopback between two collections is in `lo`'s
    // rx_bytes, and the sum of every reported delta is no more than what
    // the kernel counted from before the start to after the stop.
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let chunk = vec![7u8; 4096];
    for _ in 0..256 {
        tx.send_to(&chunk, rx.local_addr().unwrap()).unwrap();
    }
    let lo = format!("stats_counts.{p}.network.rx_bytes;host={h};interface=lo");
    let seen = graphite.seen.len();
    graphite.until(secs(10), |ls| {
        ls[seen..].iter().filter(|l| l.name == lo).count() >= 3
    });

    // `/metrics`: the same values, with their labels.
    let (status, _, body) = crate::http::get(s.running().http.unwrap(), "/metrics");
    assert_eq!(status, 200);
    let fam = p.replace(['.', '-'], "_");
    for want in [
        format!("{fam}_disk_total{{host=\"{h}\",mount=\"/\"}} {size}"),
        format!("{fam}_network_rx_bytes_total{{host=\"{h}\",interface=\"lo\"}}"),
        format!("{fam}_process_count{{host=\"{h}\",process=\"sleeper\"}} 1"),
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(&want)),
            "no {want} in /metrics"
        );
    }
    s.stop();
    let net1 = lo_rx_bytes();
    let reported: f64 = graphite
        .seen
        .iter()
        .filter(|l| l.name == lo)
        .map(|l| num(&l.value))
        .sum();
    assert!(
        reported >= 1024.0 * 1024.0,
        "lo rx_bytes {reported} misses the MiB sent"
    );
    assert!(
        reported <= net1 - net0,
        "lo rx_bytes {reported} above the kernel's {}",
        net1 - net0
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn names_without_tags_and_the_series_limits() {
    let mut graphite = Graphite::start();
    let s = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = []
series_limits = [{{ prefix = "it2.network.", max = 2 }}]
[flush]
interval = "300ms"
[http]
enabled = false
[admin]
enabled = false
[host]
enabled = true
prefix = "it2"
tags = false
disk_include = ["^/$"]
processes = false
statsyard = false
[[sink]]
type = "graphite"
address = "{}"
"#,
        graphite.addr
    )));
    let want = [
        "stats.gauges.it2.memory.total",
        "stats.gauges.it2.cpu.idle",
        "stats.gauges.it2.disk.root.total",
        "stats.gauges.it2.load.15",
    ];
    graphite.until(secs(10), |ls| {
        want.iter().all(|w| ls.iter().any(|l| l.name == *w))
    });
    // Give the network counters a few collections.
    std::thread::sleep(Duration::from_millis(1500));
    graphite.drain_for(Duration::from_millis(400));
    let ours: Vec<&str> = graphite
        .seen
        .iter()
        .map(|l| l.name.as_str())
        .filter(|n| n.contains(".it2."))
        .collect();
    assert!(
        ours.iter().all(|n| !n.contains(';')),
        "a tag without tags: {ours:?}"
    );
    // Only `/` passes disk_include (its I/O devices do not either).
    assert!(
        ours.iter()
            .filter(|n| n.contains(".disk."))
            .all(|n| n.contains(".disk.root.")),
        "{ours:?}"
    );
    assert!(!ours
        .iter()
        .any(|n| n.contains(".processes.") || n.contains(".statsyard.")));
    // At most 2 network series (a counter is its stats. and stats_counts. lines).
    let mut net: HashMap<String, ()> = HashMap::new();
    for n in ours.iter().filter(|n| n.contains(".it2.network.")) {
        net.insert(
            n.trim_start_matches("stats_counts.")
                .trim_start_matches("stats.")
                .to_string(),
            (),
        );
    }
    assert!(net.len() <= 2, "{net:?}");
    let dropped = s
        .running()
        .stats
        .series_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let interfaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .count();
    if interfaces * 8 > 2 {
        assert!(dropped > 0, "the network series past the limit are counted");
    }
    s.stop();
}
