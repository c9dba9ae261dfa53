//! `StatsdParser::parse_packet` throughput.
//!
//! Each case parses one realistic datagram of [`LINES`] lines (half counters,
//! some with `|@0.1`, plus timers, gauges and a set), swept over the length of
//! the metric name (~10, ~40, ~120 bytes) and the number of DogStatsD tags
//! per line (0, 2, 8, sent unsorted so the key is canonicalised). The same
//! cases are reported twice: in bytes per second (`parse/bytes`) and in lines
//! per second (`parse/lines`).
//!
//! ```sh
//! cargo bench --bench parse
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use statsyard::metric::MetricRef;
use statsyard::parse::{Handler, ParseError, ParseOptions, StatsdParser};

/// Lines per packet: about what a client library batches into one datagram.
const LINES: usize = 20;
/// Approximate metric-name lengths, in bytes.
const NAME_LENS: [usize; 3] = [10, 40, 120];
/// DogStatsD tags per line.
const TAG_COUNTS: [usize; 3] = [0, 2, 8];

/// Name segments the generated names are made of.
const WORDS: [&str; 8] = [
    "api",
    "checkout",
    "http",
    "requests",
    "latency",
    "db_pool",
    "status_2xx",
    "eu-west-1",
];
/// Tags as clients send them: not in canonical (sorted) order.
const TAGS: [&str; 8] = [
    "service:checkout",
    "env:prod",
    "version:1.42.0",
    "host:web-07",
    "region:eu-west-1",
    "az:eu-west-1b",
    "team:payments",
    "endpoint:post_order",
];

/// A handler that does the least a real one must: look at every value.
/// `black_box` keeps the compiler from dropping the work that produced it.
#[derive(Default)]
struct Count {
    metrics: u64,
    bad: u64,
    key_bytes: usize,
}

impl Handler for Count {
    fn metric(&mut self, m: MetricRef<'_>) {
        self.metrics += 1;
        self.key_bytes += m.key.len();
        black_box(&m);
    }

    fn bad_line(&mut self, _line: &[u8], _err: ParseError) {
        self.bad += 1;
    }
}

/// A metric name of exactly `len` bytes that differs per line.
fn name(line: usize, len: usize) -> String {
    let mut name = format!("m{line:02}");
    let mut w = line;
    while name.len() < len {
        name.push('.');
        name.push_str(WORDS[w % WORDS.len()]);
        w += 3;
    }
    name.truncate(len);
    // A name must not end in the separator it was cut at.
    if name.ends_with('.') {
        name.pop();
        name.push('x');
    }
    name
}

/// One statsd line: counters (some sampled), timers, gauges and a set.
fn line(i: usize, name_len: usize, tags: usize) -> String {
    let name = name(i, name_len);
    let mut line = match i % 10 {
        0..=2 => format!("{name}:1|c"),
        3 | 4 => format!("{name}:{}|c|@0.1", i + 1),
        5..=7 => format!("{name}:{}.{}|ms", 3 + i * 7, i % 10),
        8 => format!("{name}:{}|g", 100 + i),
        _ => format!("{name}:user{}|s", 1000 + i),
    };
    if tags > 0 {
        line.push_str("|#");
        line.push_str(&TAGS[..tags].join(","));
    }
    line
}

/// A datagram of [`LINES`] lines, `\n`-separated with no trailing newline.
fn packet(name_len: usize, tags: usize) -> Vec<u8> {
    (0..LINES)
        .map(|i| line(i, name_len, tags))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn parse(c: &mut Criterion) {
    // Each group is reported per byte and per line: the same work, two views.
    for (group_name, per_byte) in [("parse/bytes", true), ("parse/lines", false)] {
        let mut group = c.benchmark_group(group_name);
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2));
        for name_len in NAME_LENS {
            for tags in TAG_COUNTS {
                let packet = packet(name_len, tags);
                let mut parser = StatsdParser::new(ParseOptions::default());

                // The fixture must be what it claims: every line accepted.
                let mut check = Count::default();
                let counts = parser.parse_packet(&packet, &mut check);
                assert_eq!((counts.lines, counts.bad), (LINES as u64, 0));

                group.throughput(if per_byte {
                    Throughput::Bytes(packet.len() as u64)
                } else {
                    Throughput::Elements(LINES as u64)
                });
                let id = BenchmarkId::new(format!("name{name_len}"), format!("tags{tags}"));
                group.bench_with_input(id, &packet, |b, packet| {
                    b.iter(|| {
                        let mut h = Count::default();
                        let counts = parser.parse_packet(black_box(packet), &mut h);
                        black_box((counts, h.metrics, h.bad, h.key_bytes))
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
