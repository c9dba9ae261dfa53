//! statsyard-loadgen: send statsd lines over UDP as fast as one core allows
//! (or at a set rate), and count what a statsd server made of them.
//!
//! The datagrams are built once, before sending ([`workload`]); each sender
//! thread then walks them with `sendmmsg` ([`sender`]). With
//! `--graphite-listen` the server's Graphite plaintext output is received
//! ([`graphite`]) and two numbers come out of it: the server's own count of
//! lines processed (`stats_counts.statsd.metrics_received`, summed over the
//! flushes after sending began) and, for counters, the exact sum of what
//! reached Graphite. With `--server-pid` the server's CPU time and peak RSS
//! come from `/proc` ([`procfs`]).
//!
//! A human summary goes to stderr, one JSON line to stdout.
//!
//! ```text
//! statsyard-loadgen --target 127.0.0.1:8125 --lines 2000000 --lines-per-packet 20 \
//!     --keys 1000 --graphite-listen 127.0.0.1:2003 --flush-ms 2000 --server-pid 4242
//! ```
//!
//! Imports nothing of the library.

#[path = "statsyard-loadgen/graphite.rs"]
mod graphite;
#[path = "statsyard-loadgen/procfs.rs"]
mod procfs;
#[path = "statsyard-loadgen/sender.rs"]
mod sender;
#[path = "statsyard-loadgen/workload.rs"]
mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;

use crate::graphite::{Matcher, Receiver};
use crate::sender::{Plan, Sent};
use crate::workload::{Mix, Pool, PoolSpec};

/// Send statsd lines over UDP and count what the server processed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The statsd server, `host:port`.
    #[arg(long, default_value = "127.0.0.1:8125")]
    target: String,
    /// Lines per second over all sockets; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Send for this many seconds (with --lines: whichever ends first).
    /// Without either, 10 seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Send this many lines, rounded up to whole packets.
    #[arg(long)]
    lines: Option<u64>,
    /// Lines in each datagram.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    lines_per_packet: u32,
    /// Distinct key numbers per metric type, used in turn.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    keys: u32,
    /// Weights of each metric type: c (counter 1), ms (timer, some sampled),
    /// g (gauge, some deltas), s (set), h (histogram, some sampled).
    #[arg(long, default_value = "c=1")]
    mix: Mix,
    /// Share of lines with DogStatsD tags `|#env:..,host:..`, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    tags: f64,
    /// First segment of every metric name; names are `<prefix>.<type>.k<n>`.
    #[arg(long, default_value = "lg")]
    prefix: String,
    /// Sending sockets, one thread each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    sockets: u32,
    /// Datagrams per sendmmsg call at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Seed for values, types and tags.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Receive the server's Graphite plaintext output here (`host:port`) and
    /// count what it processed.
    #[arg(long)]
    graphite_listen: Option<SocketAddr>,
    /// The server's flush interval in milliseconds (sets the default --settle).
    #[arg(long, default_value_t = 10_000)]
    flush_ms: u64,
    /// Seconds to keep receiving after sending stops; default 2.5 flush
    /// intervals. Ends early once a flush reports zero lines processed
    /// (unless --full-settle).
    #[arg(long)]
    settle: Option<f64>,
    /// Always wait the whole --settle.
    #[arg(long)]
    full_settle: bool,
    /// Before sending, wait for one flush to arrive (proves the server and
    /// its Graphite output are up; needs --graphite-listen).
    #[arg(long)]
    wait_flush: bool,
    /// The server's `prefixStats`, for the default processed-lines name.
    #[arg(long, default_value = "statsd")]
    stats_prefix: String,
    /// Exact Graphite name of the server's per-flush processed-lines count
    /// (repeatable); default: the reference statsd's, in both namespaces.
    #[arg(long)]
    processed_metric: Vec<String>,
    /// Graphite name prefix of the generator's counters (repeatable);
    /// default `stats_counts.<prefix>.c.` and `stats.counters.<prefix>.c.*.count`.
    #[arg(long)]
    arrived_prefix: Vec<String>,
    /// Print every flush's processed-lines count with its arrival time.
    #[arg(long)]
    show_flushes: bool,
    /// The server's pid: report its CPU time per processed line and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// The machine-readable result (one JSON line on stdout).
#[derive(Debug, Serialize)]
struct Report {
    target: String,
    mix: String,
    lines_per_packet: u32,
    keys: u32,
    sockets: u32,
    /// Requested lines/s, 0 = unlimited.
    rate: u64,
    sent: u64,
    sent_packets: u64,
    sent_bytes: u64,
    send_errors: u64,
    /// Seconds from the first to the last datagram.
    elapsed_s: f64,
    /// Lines per second actually sent.
    offered_rate: f64,
    /// The server's own count of lines processed.
    processed: Option<f64>,
    /// Flushes that carried that count.
    flushes: Option<usize>,
    /// Counter lines sent, and the sum of those counters that reached Graphite.
    counter_lines_sent: u64,
    arrived: Option<f64>,
    /// Lost lines in percent: from `processed` when known, else from `arrived`.
    loss_pct: Option<f64>,
    /// Counter lines lost between the sender and Graphite, in percent.
    arrived_loss_pct: Option<f64>,
    /// Seconds spent receiving after sending stopped.
    settle_s: f64,
    server_cpu_s: Option<f64>,
    /// Server CPU nanoseconds per processed line.
    cpu_ns_per_line: Option<f64>,
    peak_rss_kib: Option<u64>,
    /// False when --server-pid was given and the process is gone at the end.
    server_alive: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statsyard-loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.tags) {
        bail!("--tags must be between 0 and 1");
    }
    if args.wait_flush && args.graphite_listen.is_none() {
        bail!("--wait-flush needs --graphite-listen");
    }
    let target = args
        .target
        .to_socket_addrs()
        .with_context(|| format!("--target {}", args.target))?
        .next()
        .with_context(|| format!("--target {}: no address", args.target))?;
    let duration = match (args.duration, args.lines) {
        (Some(d), _) if !(d.is_finite() && d > 0.0) => bail!("--duration must be > 0"),
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let settle = match args.settle {
        Some(s) if !(s.is_finite() && s >= 0.0) => bail!("--settle must be >= 0"),
        Some(s) => Duration::from_secs_f64(s),
        None => Duration::from_millis(args.flush_ms.saturating_mul(5) / 2),
    };

    let built = Instant::now();
    let pool = Arc::new(Pool::build(&PoolSpec {
        prefix: args.prefix.clone(),
        keys: args.keys as usize,
        lines_per_packet: args.lines_per_packet as usize,
        mix: args.mix.clone(),
        tag_share: args.tags,
        seed: args.seed,
    })?);
    eprintln!(
        "pool: {} datagrams, {:.1} MB, built in {:.2}s{}",
        pool.packets.len(),
        pool.bytes.len() as f64 / 1e6,
        built.elapsed().as_secs_f64(),
        if pool.covers_all_keys {
            ""
        } else {
            " (cut at its size limit: not every key is sent)"
        }
    );

    let receiver = match args.graphite_listen {
        Some(addr) => {
            let mut matcher = Matcher::statsd(&args.stats_prefix, &args.prefix);
            if !args.processed_metric.is_empty() {
                matcher.processed.clone_from(&args.processed_metric);
            }
            if !args.arrived_prefix.is_empty() {
                matcher.arrived = args
                    .arrived_prefix
                    .iter()
                    .map(|p| (p.clone(), String::new()))
                    .collect();
            }
            let r = Receiver::start(addr, matcher)
                .with_context(|| format!("--graphite-listen {addr}"))?;
            eprintln!("graphite: listening on {}", r.local_addr());
            Some(r)
        }
        None => None,
    };
    if let (true, Some(r)) = (args.wait_flush, &receiver) {
        let limit = Duration::from_millis(args.flush_ms.saturating_mul(3)) + Duration::from_secs(2);
        if !r.wait_until(Instant::now() + limit, |t| !t.processed_samples.is_empty()) {
            bail!("--wait-flush: no flush with the processed-lines count within {limit:?}");
        }
    }

    let cpu_before = match args.server_pid {
        Some(pid) => Some(procfs::cpu_time(pid).with_context(|| format!("--server-pid {pid}"))?),
        None => None,
    };

    // Split the work over the sockets; the remainder goes to the first ones.
    let lpp = u64::from(args.lines_per_packet);
    let total_packets = args.lines.map(|l| l.div_ceil(lpp));
    let sockets = u64::from(args.sockets);
    let per_socket_pps = args.rate as f64 / lpp as f64 / sockets as f64;
    let mut plans = Vec::new();
    for i in 0..sockets {
        let packets = total_packets.map(|t| t / sockets + u64::from(i < t % sockets));
        plans.push(Plan {
            packets,
            until: None,
            packets_per_sec: per_socket_pps,
            batch: args.batch as usize,
            first_packet: (i as usize * pool.packets.len()) / sockets as usize,
        });
    }
    let socks = (0..sockets)
        .map(|_| sender::connect(target))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("UDP socket to {target}"))?;

    let barrier = Arc::new(Barrier::new(plans.len() + 1));
    let mut threads = Vec::new();
    for (mut plan, sock) in plans.into_iter().zip(socks) {
        let (pool, barrier) = (pool.clone(), barrier.clone());
        threads.push(
            std::thread::Builder::new()
                .name("sender".into())
                .spawn(move || {
                    barrier.wait();
                    plan.until = duration.map(|d| Instant::now() + d);
                    sender::run(&pool, &sock, &plan)
                })?,
        );
    }
    if let Some(r) = &receiver {
        r.start_counting();
    }
    barrier.wait();
    let t_start = Instant::now();
    let mut sent = Sent::default();
    for t in threads {
        match t.join() {
            Ok(s) => sent.add(&s),
            Err(_) => bail!("a sender thread panicked"),
        }
    }
    let t_end = Instant::now();
    let elapsed = t_end - t_start;

    let settle_start = Instant::now();
    if let Some(r) = &receiver {
        let early = !args.full_settle;
        let drained = r.wait_until(t_end + settle, |t| early && t.idle_flush_after(t_end));
        if drained {
            // The rest of that flush's lines follow its processed count.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let settle_s = settle_start.elapsed().as_secs_f64();

    let (server_cpu, peak_rss, server_alive) = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => match procfs::cpu_time(pid) {
            Ok(after) => (
                Some(after.saturating_sub(before)),
                procfs::peak_rss_kib(pid).ok(),
                Some(true),
            ),
            Err(_) => (None, None, Some(false)),
        },
        _ => (None, None, None),
    };

    let tally = receiver.as_ref().map(|r| r.tally());
    let processed = tally.as_ref().and_then(|t| t.processed());
    let has_counters = args.mix.weight(workload::Kind::Counter) > 0.0;
    let arrived = tally.as_ref().filter(|_| has_counters).map(|t| t.arrived);
    let pct_lost = |got: f64, of: u64| (of > 0).then(|| 100.0 * (of as f64 - got) / of as f64);
    let arrived_loss = arrived.and_then(|a| pct_lost(a, sent.counter_lines));
    let loss = match processed {
        Some((p, _)) => pct_lost(p, sent.lines),
        None if args.mix.counters_only() => arrived_loss,
        None => None,
    };
    let lines_done = processed
        .map(|(p, _)| p)
        .or(arrived.filter(|_| args.mix.counters_only()));
    let cpu_ns_per_line = match (server_cpu, lines_done) {
        (Some(cpu), Some(n)) if n > 0.0 => Some(cpu.as_nanos() as f64 / n),
        _ => None,
    };
    let offered = sent.lines as f64 / elapsed.as_secs_f64().max(1e-9);

    let report = Report {
        target: target.to_string(),
        mix: args.mix.to_string(),
        lines_per_packet: args.lines_per_packet,
        keys: args.keys,
        sockets: args.sockets,
        rate: args.rate,
        sent: sent.lines,
        sent_packets: sent.packets,
        sent_bytes: sent.bytes,
        send_errors: sent.errors,
        elapsed_s: elapsed.as_secs_f64(),
        offered_rate: offered,
        processed: processed.map(|(p, _)| p),
        flushes: processed.map(|(_, n)| n),
        counter_lines_sent: sent.counter_lines,
        arrived,
        loss_pct: loss,
        arrived_loss_pct: arrived_loss,
        settle_s,
        server_cpu_s: server_cpu.map(|d| d.as_secs_f64()),
        cpu_ns_per_line,
        peak_rss_kib: peak_rss,
        server_alive,
    };
    if let (true, Some(t)) = (args.show_flushes, &tally) {
        for (at, v) in &t.processed_samples {
            // Signed offset: flushes seen while waiting came before the start.
            let offset = if *at >= t_start {
                (*at - t_start).as_secs_f64()
            } else {
                -(t_start - *at).as_secs_f64()
            };
            eprintln!("flush     {offset:+8.3}s after sending began: {v} lines processed");
        }
    }
    let receiving = receiver.is_some();
    eprint!("{}", human(&report, receiving, sent.first_error.as_deref()));
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The summary for people, on stderr.
fn human(r: &Report, receiving: bool, first_error: Option<&str>) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.0}{unit}"));
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}%"));
    let mut s = format!(
        "sent      {} lines in {} datagrams ({:.1} MB) in {:.3}s: {:.0} lines/s offered\n",
        r.sent,
        r.sent_packets,
        r.sent_bytes as f64 / 1e6,
        r.elapsed_s,
        r.offered_rate
    );
    if r.send_errors > 0 {
        s += &format!(
            "errors    {} datagrams refused by the kernel (first: {})\n",
            r.send_errors,
            first_error.unwrap_or("?")
        );
    }
    if receiving {
        s += &format!(
            "processed {} (server count over {} flushes), loss {}\n",
            opt(r.processed, ""),
            r.flushes.map_or("-".into(), |n| n.to_string()),
            pct(r.loss_pct)
        );
    }
    if r.arrived.is_some() {
        s += &format!(
            "arrived   {} of {} counter lines at Graphite, loss {}\n",
            opt(r.arrived, ""),
            r.counter_lines_sent,
            pct(r.arrived_loss_pct)
        );
    }
    if r.server_alive.is_some() {
        s += &format!(
            "server    cpu {}, {} per line, peak rss {}{}\n",
            r.server_cpu_s.map_or("-".into(), |c| format!("{c:.2}s")),
            opt(r.cpu_ns_per_line, " ns"),
            r.peak_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            if r.server_alive == Some(false) {
                " (the server exited)"
            } else {
                ""
            }
        );
    }
    s
}
