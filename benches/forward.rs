//! Forwarding one interval of N series (1,000,000 by default) from one
//! agent to one aggregator over loopback, end to end through the real
//! parts: the agent's forwarder (placement on the ring, cut into parts,
//! protobuf, snappy, the HTTP delivery engine) and a real aggregator
//! server (`/v1/forward`: decode, check, merge into its pending interval).
//!
//! Reported per round, and the median over the rounds:
//!
//! - `encode`: the forwarder's placement and encoding, CPU time of the
//!   thread that does it (measured again here, on this thread, on the
//!   same state: what the agent's `encode_seconds` gauge shows as wall);
//! - `bytes`: on the wire (compressed) and before compression, per series;
//! - `latency`: from the agent's flush (the state handed to the
//!   forwarder) to the aggregator's merge of the last message;
//! - `merge`: the aggregator's decode and merge time (its
//!   `merge_seconds_total`), which is CPU time on one core;
//! - `cpu`: the whole process's CPU time over the round (agent and
//!   aggregator share this process);
//! - `flush`: the aggregator's flush of the merged interval (merged into
//!   its registry, then computed, no sink), run as its final flush at
//!   shutdown, wall time (one thread).
//!
//! ```sh
//! cargo bench --bench forward              # 1,000,000 series, 5 rounds
//! cargo bench --bench forward -- 100000 3  # series, rounds
//! ```

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use statsyard::aggregate::{GaugeState, IntervalState, Timer};
use statsyard::flusher::Outflow;
use statsyard::metric::MetricType;

fn thread_cpu() -> Duration {
    cpu(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `n` series like a busy host's: 70 % counters, 10 % gauges, 15 % timers
/// of 5 samples, 5 % sets of 3 members; keys of about 60 bytes with tags.
fn state(n: usize) -> IntervalState {
    let mut st = IntervalState::new(10_000);
    for i in 0..n {
        let key = format!(
            "app.service{}.endpoint{}.req;env=prod;host=web{};k={i}",
            i % 97,
            i % 1009,
            i % 50
        );
        let k = key.as_bytes();
        match i % 20 {
            0..=13 => st.add_counter(k, (i % 17) as f64),
            14 | 15 => st.add_gauge(
                k,
                &GaugeState {
                    absolute: Some((i as f64, 1_700_000_000_000)),
                    delta: 0.0,
                },
            ),
            16..=18 => st.add_timer(
                k,
                Timer::from_exact(
                    MetricType::Timer,
                    5.0,
                    (0..5).map(|j| ((i + j) % 300) as f64 * 0.5).collect(),
                ),
            ),
            _ => st.add_members(k, [&b"u1"[..], b"u2", format!("u{i}").as_bytes()]),
        }
    }
    st
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("forward: {n} series, {rounds} rounds, one agent, one aggregator, loopback");
    let (mut enc, mut lat, mut merge, mut cpu, mut wire, mut raw) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut flush = Vec::new();
    for round in 0..rounds {
        // A fresh aggregator per round: its pending interval starts empty.
        let agg = statsyard::config::toml::from_str(
            "[statsd]\nudp = []\ntcp = []\n[http]\nenabled = false\n[admin]\nenabled = false\n\
             [flush]\ninterval = \"60s\"\n[aggregator]\nlisten = \"127.0.0.1:0\"\ngrace = \"30s\"\n\
             max_message_bytes = 16777216\n",
            "bench.toml",
        )
        .unwrap();
        let server = rt.block_on(statsyard::server::start(agg)).unwrap();
        let to = server.aggregator.unwrap();
        let fwd = statsyard::config::toml::from_str(
            &format!("[forward]\ndestinations = [\"{to}\"]\nbuffer_bytes = 1073741824\n"),
            "bench.toml",
        )
        .unwrap()
        .forward
        .unwrap();
        let stats = statsyard::stats::Stats::new();
        let _guard = rt.enter();
        let (mut side, _handle, task) =
            statsyard::forward::agent::start(&fwd, 10_000, Duration::from_secs(30), stats.clone());
        let st = state(n);
        // The encoding alone, on this thread, for its CPU time.
        let c0 = thread_cpu();
        let mut series = Vec::new();
        statsyard::forward::proto::series_of(&st, |_, s| series.push(s));
        let header = statsyard::forward::proto::Header {
            agent: "bench/1".into(),
            interval_start_ms: 0,
            interval_ms: 60_000,
            flushed_unix_ms: 0,
        };
        let parts = statsyard::forward::proto::parts(&header, series, fwd.max_message_bytes);
        let bytes: usize = parts
            .iter()
            .map(|b| statsyard::forward::proto::body(b, true).0.len())
            .sum();
        enc.push((thread_cpu() - c0).as_secs_f64());
        drop(parts);
        // End to end: the agent's flush hands the state to the forwarder.
        let left = side.split_state(st);
        assert!(left.is_empty());
        let astats = server.stats.aggregator();
        let (t0, p0) = (Instant::now(), process_cpu());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        side.interval_done(now - now % 60_000, 60_000);
        while astats.series.load(Ordering::Relaxed) < n as u64 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "not merged in 2 min"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let latency = t0.elapsed().as_secs_f64();
        let round_cpu = (process_cpu() - p0).as_secs_f64();
        let f = stats.forward();
        let (b, r) = (
            f.bytes.load(Ordering::Relaxed) as f64,
            f.bytes_raw.load(Ordering::Relaxed) as f64,
        );
        let m = astats.merge_micros.load(Ordering::Relaxed) as f64 / 1e6;
        println!(
            "round {round}: encode {:.3} s CPU, latency {latency:.3} s, merge {m:.3} s, process CPU {round_cpu:.3} s, \
             wire {:.1} MB ({:.1} B/series; encode-only count {:.1} MB), raw {:.1} MB ({:.1} B/series), messages {}",
            enc[round],
            b / 1e6,
            b / n as f64,
            bytes as f64 / 1e6,
            r / 1e6,
            r / n as f64,
            f.messages.load(Ordering::Relaxed),
        );
        lat.push(latency);
        merge.push(m);
        cpu.push(round_cpu);
        wire.push(b / n as f64);
        raw.push(r / n as f64);
        drop(side);
        rt.block_on(async {
            let _ = task.await;
        });
        // The aggregator's flush of what it merged (the final flush at
        // shutdown: into the registry, then computed; no sink).
        let t = Instant::now();
        server.shutdown();
        rt.block_on(server.wait());
        let f = t.elapsed().as_secs_f64();
        println!("round {round}: aggregator flush of the merged interval (and shutdown) {f:.3} s");
        flush.push(f);
    }
    println!(
        "median of {rounds}: encode {:.3} s CPU, agent-flush to aggregator-merge {:.3} s, \
         aggregator merge {:.3} s, aggregator flush {:.3} s, process CPU {:.3} s, {:.1} B/series on the wire ({:.1} before snappy)",
        median(&mut enc),
        median(&mut lat),
        median(&mut merge),
        median(&mut flush),
        median(&mut cpu),
        median(&mut wire),
        median(&mut raw),
    );
}
