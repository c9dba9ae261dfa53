//! `Shard::insert` throughput, and the flusher's `take()` + `Registry::merge`.
//!
//! Inputs are pre-parsed [`MetricRef`]s over pre-built key buffers, in a
//! shuffled order, so only aggregation is measured (no parsing, no key
//! building). Throughput is in values inserted (`insert/*`) or series merged
//! (`take_merge/*`).
//!
//! - `insert/counter_existing/N`: N distinct counter keys already in the
//!   shard (the steady state within an interval: a lookup and an add).
//! - `insert/counter_new/N`: each of N keys inserted once into an empty
//!   shard (the first interval after a flush: a key allocation per series).
//! - `insert/timer_new/10000`: 10 samples for each of 10k timer keys into an
//!   empty shard (sample vectors growing).
//!
//! The shards above are not linked to a registry, so no series limit
//! applies. With the default `max_series` (a registry built from the same
//! options, as the server builds them):
//!
//! - `insert/counter_existing_limited/N`: as `counter_existing` (a key the
//!   shard holds never reaches the limit check).
//! - `insert/counter_new_known/N`: each of N keys the registry already holds
//!   inserted once into an empty shard: the first value of every series in
//!   every interval after the first (a read of the admission set per key).
//! - `insert/counter_new_admitted/N`: each of N keys nobody holds yet, into
//!   an empty shard and registry: every key is admitted (a write to the
//!   admission set per key).
//! - `take_merge/N`: a shard holding N mixed series is taken and merged into a
//!   registry that already knows them (the flusher's steady state).
//!
//! ```sh
//! cargo bench --bench aggregate
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use statsyard::aggregate::{AggregateOptions, Registry, Shard};
use statsyard::metric::{MetricRef, MetricType, Value};

/// Distinct keys for the counter sweeps.
const COUNTER_KEYS: [usize; 3] = [100, 10_000, 1_000_000];
/// Values per `counter_existing` iteration when there are fewer keys than this.
const MIN_STREAM: usize = 100_000;
/// Timer keys, and samples per timer key per interval.
const TIMER_KEYS: usize = 10_000;
const TIMER_SAMPLES: usize = 10;
/// Series in a `take_merge` snapshot.
const MERGE_SERIES: [usize; 2] = [10_000, 100_000];

/// A fixed-seed splitmix64: a reproducible shuffle without a dependency the
/// crate does not otherwise need.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// `n` distinct canonical keys shaped like real ones (`svc.host.metric`,
/// every fourth with tags), 30–60 bytes each.
fn make_keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut k = format!(
                "svc{:02}.web{:03}.http.requests.endpoint_{i}",
                i % 37,
                i % 211
            );
            if i % 4 == 0 {
                k.push_str(";env=prod;region=eu-west-1");
            }
            k.into_bytes()
        })
        .collect()
}

fn counter(key: &[u8]) -> MetricRef<'_> {
    MetricRef {
        key,
        kind: MetricType::Counter,
        value: Value::Number(1.0),
        sample_rate: 1.0,
        timestamp: None,
    }
}

fn timer(key: &[u8], v: f64) -> MetricRef<'_> {
    MetricRef {
        key,
        kind: MetricType::Timer,
        value: Value::Number(v),
        sample_rate: 1.0,
        timestamp: None,
    }
}

fn insert_all(shard: &mut Shard, refs: &[MetricRef<'_>]) {
    for m in refs {
        shard.insert(black_box(m));
    }
}

/// Big inputs get few, long samples so the whole run stays short.
fn size_config(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, n: usize) {
    if n >= 1_000_000 {
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5));
    } else {
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(2));
    }
}

/// Without holding many filled shards in memory at once.
fn batch_size(n: usize) -> BatchSize {
    match n {
        0..=1_000 => BatchSize::SmallInput,
        1_001..=10_000 => BatchSize::LargeInput,
        _ => BatchSize::PerIteration,
    }
}

fn insert(c: &mut Criterion) {
    let opts = AggregateOptions::default();
    let mut rng = Rng(0x5eed);
    let mut group = c.benchmark_group("insert");
    group.warm_up_time(Duration::from_secs(1));

    for n in COUNTER_KEYS {
        let keys = make_keys(n);
        size_config(&mut group, n);

        // Existing keys: every key is in the shard before timing starts.
        let mut stream: Vec<MetricRef<'_>> = keys
            .iter()
            .cycle()
            .take(n.max(MIN_STREAM))
            .map(|k| counter(k))
            .collect();
        rng.shuffle(&mut stream);
        let mut shard = Shard::new(&opts);
        insert_all(&mut shard, &stream);
        group.throughput(Throughput::Elements(stream.len() as u64));
        group.bench_function(BenchmarkId::new("counter_existing", n), |b| {
            b.iter(|| insert_all(&mut shard, &stream))
        });
        drop(shard);

        // New keys: an empty shard per iteration, each key once. Dropping
        // the filled shard is left out of the timing.
        let mut once: Vec<MetricRef<'_>> = keys.iter().map(|k| counter(k)).collect();
        rng.shuffle(&mut once);
        group.throughput(Throughput::Elements(once.len() as u64));
        group.bench_function(BenchmarkId::new("counter_new", n), |b| {
            b.iter_batched(
                || Shard::new(&opts),
                |mut shard| {
                    insert_all(&mut shard, &once);
                    shard
                },
                batch_size(n),
            )
        });

        // The same with series limits on: the shards are linked to a
        // registry that already holds every key.
        let limited = AggregateOptions::default();
        let mut reg = Registry::new(&limited);
        let mut shard = Shard::new(&limited);
        insert_all(&mut shard, &once);
        reg.merge(shard.take());
        insert_all(&mut shard, &stream);
        group.throughput(Throughput::Elements(stream.len() as u64));
        group.bench_function(BenchmarkId::new("counter_existing_limited", n), |b| {
            b.iter(|| insert_all(&mut shard, &stream))
        });
        drop(shard);
        group.throughput(Throughput::Elements(once.len() as u64));
        group.bench_function(BenchmarkId::new("counter_new_known", n), |b| {
            b.iter_batched(
                || Shard::new(&limited),
                |mut shard| {
                    insert_all(&mut shard, &once);
                    shard
                },
                batch_size(n),
            )
        });
        drop(reg);
        // Fresh options per iteration: each registry links only its own shard.
        group.bench_function(BenchmarkId::new("counter_new_admitted", n), |b| {
            b.iter_batched(
                || {
                    let o = AggregateOptions::default();
                    (Registry::new(&o), Shard::new(&o))
                },
                |(reg, mut shard)| {
                    insert_all(&mut shard, &once);
                    (reg, shard)
                },
                batch_size(n),
            )
        });
    }

    let keys = make_keys(TIMER_KEYS);
    let mut samples: Vec<MetricRef<'_>> = (0..TIMER_SAMPLES)
        .flat_map(|s| {
            keys.iter()
                .enumerate()
                .map(move |(i, k)| timer(k, ((i * 7 + s * 13) % 500) as f64 + 0.25))
        })
        .collect();
    rng.shuffle(&mut samples);
    size_config(&mut group, samples.len());
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function(BenchmarkId::new("timer_new", TIMER_KEYS), |b| {
        b.iter_batched(
            || Shard::new(&opts),
            |mut shard| {
                insert_all(&mut shard, &samples);
                shard
            },
            batch_size(TIMER_KEYS),
        )
    });
    group.finish();
}

/// One interval's values for `n` series: 85% counters, 5% timers with
/// [`TIMER_SAMPLES`] samples, 5% gauges, 5% sets with three members.
fn mixed<'a>(keys: &'a [Vec<u8>], members: &'a [Vec<u8>]) -> Vec<MetricRef<'a>> {
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match i % 20 {
            0..=16 => out.push(counter(key)),
            17 => out.extend((0..TIMER_SAMPLES).map(|s| timer(key, (i % 97 + s) as f64))),
            18 => out.push(MetricRef {
                key,
                kind: MetricType::Gauge,
                value: Value::Number(i as f64),
                sample_rate: 1.0,
                timestamp: None,
            }),
            _ => out.extend((0..3).map(|s| MetricRef {
                key,
                kind: MetricType::Set,
                value: Value::SetMember(&members[(i + s) % members.len()]),
                sample_rate: 1.0,
                timestamp: None,
            })),
        }
    }
    out
}

fn take_merge(c: &mut Criterion) {
    let opts = AggregateOptions::default();
    let members: Vec<Vec<u8>> = (0..1000).map(|i| format!("user{i}").into_bytes()).collect();
    let mut group = c.benchmark_group("take_merge");
    group
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));

    for n in MERGE_SERIES {
        let keys = make_keys(n);
        let values = mixed(&keys, &members);
        // The registry already knows every series, as it does from the
        // second flush on.
        let mut reg = Registry::new(&opts);
        let mut shard = Shard::new(&opts);
        insert_all(&mut shard, &values);
        reg.merge(shard.take());
        reg.end_interval();

        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            // Filling the shard and the registry's end-of-interval reset are
            // per-iteration setup, so only take + merge are timed.
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    insert_all(&mut shard, &values);
                    let started = Instant::now();
                    let snap = shard.take();
                    reg.merge(black_box(snap));
                    timed += started.elapsed();
                    reg.end_interval();
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, insert, take_merge);
criterion_main!(benches);
