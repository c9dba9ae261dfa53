//! The flush: `flush::compute::compute` (registry → batch, the reference's
//! `process_metrics`) and `flush::naming::graphite_lines` (batch → Graphite
//! names).
//!
//! The registry holds one interval of mixed series: 85% counters, 5% timers
//! with [`TIMER_SAMPLES`] samples each (half of them matched by a histogram
//! rule), 5% gauges and 5% sets of three members. It is built once per size,
//! outside the timing; `compute` only reads it. Options are the defaults with
//! percentiles `[90, 99]` and one histogram rule. Throughput is in series.
//! Dropping the result is left out of the timing.
//!
//! ```sh
//! cargo bench --bench flush
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use statsyard::aggregate::{AggregateOptions, Registry, Shard};
use statsyard::flush::compute::{compute, Bin, ComputeOptions, HistogramRule, Percentile};
use statsyard::flush::naming::{graphite_lines, Naming};
use statsyard::metric::{MetricRef, MetricType, Value};

/// Series in the registry for `compute`.
const COMPUTE_SERIES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// Series in the batch for `graphite_lines`.
const NAMING_SERIES: usize = 100_000;
/// Samples per timer per interval.
const TIMER_SAMPLES: usize = 10;
/// Any fixed flush time: `compute` stores it as it is.
const TIMESTAMP: u64 = 1_700_000_000;

/// A registry of `n` mixed series (see the module doc), built through a
/// shard as the server builds it.
fn registry(n: usize) -> Registry {
    let opts = AggregateOptions::default();
    let mut shard = Shard::new(&opts);
    let mut key = Vec::new();
    for i in 0..n {
        let kind = match i % 20 {
            0..=16 => "requests",
            17 if i % 40 == 17 => "latency",
            17 => "render_time",
            18 => "pool_size",
            _ => "users",
        };
        key.clear();
        key.extend_from_slice(format!("svc{:02}.web{:03}.{kind}.n{i}", i % 37, i % 211).as_bytes());
        if i % 4 == 0 {
            key.extend_from_slice(b";env=prod;region=eu-west-1");
        }
        let mut put = |kind: MetricType, value: Value<'_>| {
            shard.insert(&MetricRef {
                key: &key,
                kind,
                value,
                sample_rate: 1.0,
                timestamp: None,
            });
        };
        match i % 20 {
            0..=16 => put(MetricType::Counter, Value::Number((i % 13 + 1) as f64)),
            17 => {
                for s in 0..TIMER_SAMPLES {
                    let ms = ((i * 7 + s * 31) % 700) as f64 + 0.5;
                    put(MetricType::Timer, Value::Number(ms));
                }
            }
            18 => put(MetricType::Gauge, Value::Number(i as f64)),
            _ => {
                for s in 0..3 {
                    let member = format!("user{}", (i + s) % 1000);
                    put(MetricType::Set, Value::SetMember(member.as_bytes()));
                }
            }
        }
    }
    let mut reg = Registry::new(&opts);
    reg.merge(shard.take());
    reg
}

fn options() -> ComputeOptions {
    ComputeOptions {
        percentiles: vec![Percentile { value: 90.0 }, Percentile { value: 99.0 }],
        histograms: vec![HistogramRule {
            metric: "latency".into(),
            bins: vec![
                Bin::Limit(10.0),
                Bin::Limit(50.0),
                Bin::Limit(100.0),
                Bin::Limit(500.0),
                Bin::Inf,
            ],
        }],
        ..ComputeOptions::default()
    }
}

fn flush(c: &mut Criterion) {
    let opts = options();
    let mut group = c.benchmark_group("flush");
    group.warm_up_time(Duration::from_secs(1));

    for n in COMPUTE_SERIES {
        let reg = registry(n);
        assert_eq!(reg.len(), n);
        if n >= 1_000_000 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(8));
        } else {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(3));
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("compute", n), |b| {
            b.iter_with_large_drop(|| compute(black_box(&reg), &opts, TIMESTAMP))
        });
    }

    let batch = compute(&registry(NAMING_SERIES), &opts, TIMESTAMP);
    let naming = Naming::default();
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(NAMING_SERIES as u64));
    group.bench_function(BenchmarkId::new("graphite_lines", NAMING_SERIES), |b| {
        b.iter_with_large_drop(|| {
            let mut out = Vec::new();
            graphite_lines(black_box(&batch), &naming, &mut out);
            out
        })
    });
    group.finish();
}

criterion_group!(benches, flush);
criterion_main!(benches);
