//! The disk spool (`statsyard::spool::Spool`): append throughput, and replay
//! throughput (load back, then acknowledge record by record, as a relay
//! destination does; every acknowledgement rewrites the cursor, and drained
//! segments are deleted).
//!
//! Each sample starts from an empty spool in a fresh temporary directory
//! (cap 4 GiB, 8 MiB segments, so nothing is dropped); only the appends, or
//! only the replay, are timed. Writes go to the page cache (the spool does
//! not fsync), so this measures the spool's CPU and syscall cost, not the
//! disk. Throughput is in payload bytes; entries/s is bytes/s divided by the
//! entry size.
//!
//! ```sh
//! cargo bench --bench spool
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use statsyard::spool::{Spool, SpoolConfig};
use statsyard::stats::spool::SpoolStats;

/// Payload sizes: a relay record of a few points, a small flush, a large one.
const SIZES: [usize; 3] = [512, 16 * 1024, 1024 * 1024];

fn open(dir: &std::path::Path) -> Spool {
    let cfg = SpoolConfig {
        dir: dir.join("s"),
        max_bytes: 4 << 30,
        segment_bytes: 8 << 20,
    };
    Spool::open(cfg, Arc::new(SpoolStats::default()), Duration::ZERO).expect("open spool")
}

fn payload(size: usize) -> Vec<u8> {
    // Graphite-like text, so the checksum sees realistic bytes.
    b"stats.counters.app.requests.count 1234 1700000000\n"
        .iter()
        .copied()
        .cycle()
        .take(size)
        .collect()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool_append");
    for size in SIZES {
        let data = payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut s = open(dir.path());
                let started = Instant::now();
                for _ in 0..iters {
                    s.append([(&data[..], 1)]).expect("append");
                }
                let took = started.elapsed();
                drop(s);
                took
            });
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool_replay");
    for size in SIZES {
        let data = payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut s = open(dir.path());
                for _ in 0..iters {
                    s.append([(&data[..], 1)]).expect("append");
                }
                let mut recs = Vec::new();
                let started = Instant::now();
                while !s.is_empty() {
                    recs.clear();
                    s.read(1 << 20, &mut recs);
                    for r in &recs {
                        black_box(&r.data);
                        s.ack(&[(r.pos, r.data.len() as u64)]);
                    }
                }
                started.elapsed()
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append, replay
}
criterion_main!(benches);
