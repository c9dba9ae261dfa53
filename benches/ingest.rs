//! The receive thread's work on a fixed workload, without sockets: the
//! loadgen's datagrams (W1, W2 or MIXED, byte for byte what
//! `statsyard-loadgen` sends) through [`Ingest::packet`] (parse, sanitise,
//! hash, probe, insert), with the flusher's work every `--interval` lines
//! (`Shard::take`, `Registry::merge`, `compute`, the Graphite names, and
//! `end_interval`) in the same thread.
//!
//! A plain program rather than a criterion bench, so that its instruction
//! count under callgrind is a stable A/B figure on a busy machine (timings
//! are not), and so that `perf record` sees one long steady loop:
//!
//! ```sh
//! cargo bench --bench ingest --no-run        # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=cg.out $BIN --workload W2 --lines 3000000
//! callgrind_annotate cg.out | head -40
//! $BIN --workload W2 --lines 30000000        # CPU time per line, per stage
//! ```
//!
//! `--ring-mib N` (64): the datagrams are copied through a ring of that
//! size first, as the kernel copies them out of the socket buffer (see the
//! comment in `main`); `--ring-mib 0` reads them from the pool in place.
//!
//! Output: one line per stage with nanoseconds per line (this thread's CPU
//! time), and the totals.

#[path = "../src/bin/statsyard-loadgen/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use statsyard::aggregate::{AggregateOptions, Registry, Shard};
use statsyard::flush::compute::{compute, ComputeOptions};
use statsyard::flush::naming::{for_each_graphite_line, Naming};
use statsyard::listener::{Ingest, RawTap};
use statsyard::parse::ParseOptions;
use statsyard::stats::Stats;

use workload::{Mix, Pool, PoolSpec};

struct Args {
    workload: String,
    lines: u64,
    interval: u64,
    flush: bool,
    /// MiB of receive ring the datagrams are copied through first.
    ring_mib: usize,
}

fn args() -> Args {
    let mut a = Args {
        workload: "W2".into(),
        lines: 10_000_000,
        interval: 0,
        flush: true,
        ring_mib: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--workload" => a.workload = value(),
            "--lines" => a.lines = value().parse().expect("--lines N"),
            "--interval" => a.interval = value().parse().expect("--interval N"),
            "--no-flush" => a.flush = false,
            "--ring-mib" => a.ring_mib = value().parse().expect("--ring-mib N"),
            // `cargo bench` passes this; there is nothing to filter.
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    a
}

/// The loadgen's arguments for each of compare.py's workloads, and the
/// lines per flush interval: about what one core processes in 1 s.
fn spec(workload: &str) -> (PoolSpec, u64) {
    let (mix, lpp, keys, tags, interval) = match workload {
        "W1" => ("c=1", 20, 1_000, 0.0, 8_000_000),
        "W2" => ("c=1", 60, 100_000, 0.0, 4_000_000),
        "MIXED" => ("c=4,ms=3,g=1,s=1,h=1", 20, 10_000, 0.3333, 2_000_000),
        other => panic!("unknown workload {other:?} (W1, W2, MIXED)"),
    };
    let spec = PoolSpec {
        prefix: "lg".into(),
        keys,
        lines_per_packet: lpp,
        mix: mix.parse::<Mix>().expect("a valid mix"),
        tag_share: tags,
        seed: 1,
    };
    (spec, interval)
}

/// This thread's CPU time: unlike the wall clock it leaves out the time
/// other processes on the same core (builds, here) take from it.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let a = args();
    let (spec, default_interval) = spec(&a.workload);
    let interval = if a.interval > 0 {
        a.interval
    } else {
        default_interval
    };
    let pool = Pool::build(&spec).expect("the pool builds");
    let lpp = pool.lines_per_packet as u64;

    // Linked as the server links them: the registry publishes the series
    // limits' admission state to the shard.
    let opts = AggregateOptions::default();
    let mut registry = Registry::new(&opts);
    let shard = Arc::new(Mutex::new(Shard::new(&opts)));
    let stats = Stats::new();
    let mut ingest = Ingest::new(
        &ParseOptions::default(),
        shard.clone(),
        stats,
        RawTap::default(),
        false,
    );
    let compute_opts = ComputeOptions::default();
    let naming = Naming::default();

    let mut receive = Duration::ZERO;
    let mut flush = Duration::ZERO;
    let mut flushes = 0u64;
    let mut graphite_lines = 0u64;
    let mut done = 0u64;
    let mut since_flush = 0u64;
    let mut next = 0usize;
    // The server reads each datagram out of a socket buffer of tens of MiB
    // that the sender keeps writing: the bytes stream through the caches
    // and push the tables out. Copying every datagram through a ring of that
    // size first gives the tables the same pressure; without it (a pool of a
    // few MiB, read over and over) they stay in cache and lookups look
    // several times cheaper than in the server.
    let mut ring = vec![0u8; (a.ring_mib << 20).max(1 << 16)];
    let mut at = 0usize;
    while done < a.lines {
        let started = cpu_now();
        // A batch of 64 datagrams between clock reads, as one recvmmsg.
        for _ in 0..64 {
            let p = &pool.packets[next];
            next = (next + 1) % pool.packets.len();
            if at + p.len > ring.len() {
                at = 0;
            }
            let slot = &mut ring[at..at + p.len];
            slot.copy_from_slice(&pool.bytes[p.start..p.start + p.len]);
            ingest.packet(slot);
            // Datagrams sit in 2 KiB-aligned kernel buffers.
            at += p.len.next_multiple_of(2048);
        }
        receive += cpu_now() - started;
        done += 64 * lpp;
        since_flush += 64 * lpp;
        if a.flush && since_flush >= interval {
            since_flush = 0;
            let started = cpu_now();
            let snap = shard.lock().expect("not poisoned").take();
            registry.merge(snap);
            let batch = compute(&registry, &compute_opts, 1_700_000_000);
            for_each_graphite_line(&batch, &naming, &mut |_, _| graphite_lines += 1);
            registry.end_interval();
            drop(batch);
            flush += cpu_now() - started;
            flushes += 1;
        }
    }
    let per_line = |d: Duration| d.as_nanos() as f64 / done as f64;
    println!(
        "workload={} lines={} interval={} flushes={} graphite_lines={}",
        a.workload, done, interval, flushes, graphite_lines
    );
    println!("receive ns/line {:8.1}", per_line(receive));
    println!("flush   ns/line {:8.1}", per_line(flush));
    println!("total   ns/line {:8.1}", per_line(receive + flush));
}
