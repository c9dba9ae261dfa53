//! Aggregation math: shards, merging, and the reference's end-of-interval rules.

use super::*;
use crate::metric::{MetricRef, MetricType, Value};

fn m(key: &str, kind: MetricType, value: Value<'static>, rate: f64) -> MetricRef<'static> {
    // Leaked: test keys live for the whole test run, which is what MetricRef wants here.
    let key: &'static str = Box::leak(key.to_owned().into_boxed_str());
    MetricRef {
        key: key.as_bytes(),
        kind,
        value,
        sample_rate: rate,
        timestamp: None,
    }
}

fn c(key: &str, v: f64, rate: f64) -> MetricRef<'static> {
    m(key, MetricType::Counter, Value::Number(v), rate)
}
fn g(key: &str, v: f64) -> MetricRef<'static> {
    m(key, MetricType::Gauge, Value::Number(v), 1.0)
}
fn gd(key: &str, v: f64) -> MetricRef<'static> {
    m(key, MetricType::Gauge, Value::GaugeDelta(v), 1.0)
}
fn t(key: &str, kind: MetricType, v: f64, rate: f64) -> MetricRef<'static> {
    m(key, kind, Value::Number(v), rate)
}
fn s(key: &str, member: &'static str) -> MetricRef<'static> {
    m(
        key,
        MetricType::Set,
        Value::SetMember(member.as_bytes()),
        1.0,
    )
}

/// One shard, all values, merged into a fresh registry.
fn registry(opts: &AggregateOptions, values: &[MetricRef<'_>]) -> Registry {
    let mut shard = Shard::new(opts);
    values.iter().for_each(|v| {
        shard.insert(v);
    });
    let mut reg = Registry::new(opts);
    reg.merge(shard.take());
    reg
}

#[test]
fn counters_sum_like_the_reference() {
    // Expected values from node: c = 0; c += v * (1 / rate) for each, in order.
    let cases: &[(&[(f64, f64)], f64)] = &[
        (&[(1.0, 1.0)], 1.0),
        (&[(1.0, 0.1), (1.0, 0.1)], 20.0),
        (&[(0.1, 1.0), (0.2, 1.0), (0.3, 1.0)], 0.6000000000000001),
        (&[(5.0, 0.3), (-2.0, 1.0)], 14.666666666666668),
        (&[(1.5, 0.5), (2.25, 0.25)], 12.0),
    ];
    let opts = AggregateOptions::default();
    for (values, want) in cases {
        let ms: Vec<_> = values.iter().map(|&(v, r)| c("a", v, r)).collect();
        let reg = registry(&opts, &ms);
        assert_eq!(reg.counter(b"a"), Some(*want), "{values:?}");
    }
}

#[test]
fn gauges_absolute_and_deltas() {
    let opts = AggregateOptions::default();
    let mut shard = Shard::new(&opts);
    let mut reg = Registry::new(&opts);
    // Interval 1: absolute then deltas, applied in order inside the shard.
    for v in [g("g", 0.1), gd("g", 0.2), gd("g", 0.3)] {
        shard.insert(&v);
    }
    reg.merge(shard.take());
    assert_eq!(reg.gauge(b"g"), Some(0.6000000000000001));
    reg.end_interval();
    assert_eq!(reg.gauge(b"g"), Some(0.6000000000000001), "gauges persist");
    // Interval 2: only deltas; the registry applies them one by one onto the
    // persistent value, as the reference would (node: 0.6000000000000001 + 0.1 - 0.7).
    for v in [gd("g", 0.1), gd("g", -0.7)] {
        shard.insert(&v);
    }
    reg.merge(shard.take());
    assert_eq!(reg.gauge(b"g"), Some(0.6000000000000001 + 0.1 - 0.7));
    // A delta onto 0 (falsy in JavaScript) replaces it; a new gauge starts at the delta.
    for v in [g("z", 0.0), gd("z", -3.0), gd("new", 4.0)] {
        shard.insert(&v);
    }
    reg.merge(shard.take());
    assert_eq!(reg.gauge(b"z"), Some(-3.0));
    assert_eq!(reg.gauge(b"new"), Some(4.0));
}

#[test]
fn timers_share_one_series_and_count_rates() {
    let opts = AggregateOptions::default();
    let reg = registry(
        &opts,
        &[
            t("t", MetricType::Histogram, 3.0, 1.0),
            t("t", MetricType::Timer, 1.0, 0.1),
            t("t", MetricType::Distribution, 2.0, 0.5),
        ],
    );
    let timer = reg.timer(b"t").expect("timer exists");
    assert_eq!(timer.kind(), MetricType::Histogram, "first type seen wins");
    // node: 0 + 1/1 + 1/0.1 + 1/0.5
    assert_eq!(timer.count(), 13.0);
    match timer.samples() {
        TimerSamples::Exact(v) => assert_eq!(v, &[3.0, 1.0, 2.0]),
        TimerSamples::Hist(_) => panic!("3 samples are exact"),
    }
}

#[test]
fn timers_switch_to_a_histogram_past_the_bound() {
    let opts = AggregateOptions {
        timer_exact_samples: 3,
        ..AggregateOptions::default()
    };
    // (samples in shard A, samples in shard B, exact after merge?)
    let cases: &[(usize, usize, bool)] = &[
        (3, 0, true),
        (4, 0, false),
        (2, 1, true),
        (2, 2, false),
        (0, 3, true),
        (4, 4, false),
        (1, 4, false),
    ];
    for &(a, b, exact) in cases {
        let mut reg = Registry::new(&opts);
        for n in [a, b] {
            let mut shard = Shard::new(&opts);
            for i in 0..n {
                shard.insert(&t("t", MetricType::Timer, i as f64 + 1.0, 1.0));
            }
            reg.merge(shard.take());
        }
        let timer = reg.timer(b"t");
        if a + b == 0 {
            assert!(timer.is_none());
            continue;
        }
        let timer = timer.expect("timer exists");
        assert_eq!(timer.len(), (a + b) as u64, "{a}+{b}");
        assert_eq!(timer.count(), (a + b) as f64, "{a}+{b}");
        assert_eq!(
            matches!(timer.samples(), TimerSamples::Exact(_)),
            exact,
            "{a}+{b}"
        );
        if let TimerSamples::Hist(h) = timer.samples() {
            let want: f64 = (1..=a).chain(1..=b).map(|i| i as f64).sum();
            assert_eq!(h.sum(), want);
            assert_eq!(h.min(), 1.0);
            assert_eq!(h.max(), a.max(b) as f64);
        }
    }
}

#[test]
fn sets_count_distinct_members() {
    let opts = AggregateOptions::default();
    let mut reg = Registry::new(&opts);
    for members in [&["a", "b", "a"][..], &["b", "c"][..]] {
        let mut shard = Shard::new(&opts);
        members.iter().for_each(|mb| {
            shard.insert(&s("s", mb));
        });
        reg.merge(shard.take());
    }
    assert_eq!(reg.set_len(b"s"), Some(3));
}

#[test]
fn take_leaves_the_shard_empty() {
    let opts = AggregateOptions::default();
    let mut shard = Shard::new(&opts);
    shard.insert(&c("a", 1.0, 1.0));
    shard.insert(&s("s", "x"));
    let snap = shard.take();
    assert_eq!(snap.len(), 2);
    assert!(shard.take().is_empty());
}

#[test]
fn direct_counters_and_gauges() {
    let opts = AggregateOptions {
        delete_gauges: true,
        ..AggregateOptions::default()
    };
    let mut reg = Registry::new(&opts);
    reg.add_counter(b"statsd.packets_received", 0.0);
    reg.add_counter(b"statsd.packets_received", 2.0);
    reg.add_counter(b"statsd.packets_received", 3.0);
    assert_eq!(reg.counter(b"statsd.packets_received"), Some(5.0));
    reg.set_gauge(b"statsd.timestamp_lag", -1.0);
    for _ in 0..5 {
        reg.end_interval();
    }
    assert_eq!(
        reg.gauge(b"statsd.timestamp_lag"),
        Some(-1.0),
        "never expires"
    );
}

/// Which series survive `end_interval`, and with what value, per option.
#[test]
fn end_interval_per_option() {
    struct Case {
        opts: AggregateOptions,
        /// Counters left (key, value) after one end_interval, sorted.
        counters: &'static [(&'static str, f64)],
        timer_kept: bool,
        set_kept: bool,
        /// Flushes the gauge is still there after: `None` = forever.
        gauge_flushes: Option<u32>,
    }
    let base = AggregateOptions::default();
    let all_counters: &[(&str, f64)] = &[
        ("a", 0.0),
        ("my.bad_lines_seen.x", 0.0),
        ("statsd.metrics_received", 0.0),
        ("statsd.packets_received", 0.0),
    ];
    let cases = [
        Case {
            opts: base.clone(),
            counters: all_counters,
            timer_kept: true,
            set_kept: true,
            gauge_flushes: None,
        },
        Case {
            opts: AggregateOptions {
                delete_counters: true,
                ..base.clone()
            },
            // Substring match, as the reference: any key containing the names stays.
            counters: &all_counters[1..],
            timer_kept: true,
            set_kept: true,
            gauge_flushes: None,
        },
        Case {
            opts: AggregateOptions {
                delete_timers: true,
                ..base.clone()
            },
            counters: all_counters,
            timer_kept: false,
            set_kept: true,
            gauge_flushes: None,
        },
        Case {
            opts: AggregateOptions {
                delete_sets: true,
                ..base.clone()
            },
            counters: all_counters,
            timer_kept: true,
            set_kept: false,
            gauge_flushes: None,
        },
        Case {
            opts: AggregateOptions {
                delete_gauges: true,
                ..base.clone()
            },
            counters: all_counters,
            timer_kept: true,
            set_kept: true,
            gauge_flushes: Some(1),
        },
        Case {
            opts: AggregateOptions {
                delete_gauges: true,
                gauges_max_ttl: 3,
                ..base.clone()
            },
            counters: all_counters,
            timer_kept: true,
            set_kept: true,
            gauge_flushes: Some(3),
        },
    ];
    for case in cases {
        let opts = &case.opts;
        let mut reg = registry(
            opts,
            &[
                c("a", 2.0, 1.0),
                c("my.bad_lines_seen.x", 1.0, 1.0),
                c("statsd.metrics_received", 1.0, 1.0),
                g("g", 7.0),
                t("t", MetricType::Timer, 5.0, 0.5),
                s("s", "m"),
            ],
        );
        reg.add_counter(b"statsd.packets_received", 4.0);
        reg.end_interval();

        let mut counters: Vec<_> = reg.counters().map(|(k, v)| (k.to_string(), v)).collect();
        counters.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<_> = case
            .counters
            .iter()
            .map(|&(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(counters, want, "{opts:?}");

        match reg.timer(b"t") {
            Some(timer) => {
                assert!(case.timer_kept, "{opts:?}");
                assert_eq!((timer.count(), timer.len()), (0.0, 0), "{opts:?}");
            }
            None => assert!(!case.timer_kept, "{opts:?}"),
        }
        assert_eq!(reg.set_len(b"s"), case.set_kept.then_some(0), "{opts:?}");

        // The gauge was seen in one flush already; count the further ones.
        let mut flushes = 1;
        while reg.gauge(b"g").is_some() && flushes < 10 {
            assert_eq!(reg.gauge(b"g"), Some(7.0));
            reg.end_interval();
            flushes += 1;
        }
        let flushes = (flushes < 10).then_some(flushes);
        assert_eq!(flushes, case.gauge_flushes, "{opts:?}");
    }
}

#[test]
fn a_gauge_update_renews_its_ttl() {
    let opts = AggregateOptions {
        delete_gauges: true,
        gauges_max_ttl: 2,
        ..AggregateOptions::default()
    };
    let mut reg = registry(&opts, &[g("g", 1.0)]);
    reg.end_interval(); // ttl 1
    let mut shard = Shard::new(&opts);
    shard.insert(&gd("g", 1.0));
    reg.merge(shard.take()); // ttl 2 again
    reg.end_interval(); // 1
    assert_eq!(reg.gauge(b"g"), Some(2.0));
    reg.end_interval(); // 0: gone
    assert_eq!(reg.gauge(b"g"), None);
}

#[test]
fn hits_count_values_per_series_and_interval() {
    let opts = AggregateOptions::default();
    let mut reg = Registry::new(&opts);
    let mut a = Shard::new(&opts);
    let mut b = Shard::new(&opts);
    for _ in 0..3 {
        a.insert(&c("hot", 1.0, 0.1));
    }
    b.insert(&c("hot", 1.0, 1.0));
    a.insert(&g("gg", 1.0));
    a.insert(&gd("gg", 1.0));
    a.insert(&t("tt", MetricType::Histogram, 1.0, 1.0));
    b.insert(&t("tt", MetricType::Timer, 2.0, 0.5));
    a.insert(&s("ss", "x"));
    a.insert(&s("ss", "x"));
    reg.merge(a.take());
    reg.merge(b.take());
    assert_eq!(reg.hits(MetricType::Counter, b"hot"), 4);
    assert_eq!(reg.hits(MetricType::Gauge, b"gg"), 2);
    assert_eq!(reg.hits(MetricType::Timer, b"tt"), 2);
    assert_eq!(reg.hits(MetricType::Distribution, b"tt"), 2);
    assert_eq!(reg.hits(MetricType::Set, b"ss"), 2);
    assert_eq!(reg.hits(MetricType::Gauge, b"hot"), 0);
    assert!(reg.top().is_empty());

    reg.end_interval();
    assert_eq!(reg.hits(MetricType::Counter, b"hot"), 0);
    let top: Vec<(String, MetricType, u64)> = reg
        .top()
        .iter()
        .map(|h| (h.key.to_string(), h.kind, h.hits))
        .collect();
    assert_eq!(
        top,
        [
            ("hot".to_string(), MetricType::Counter, 4),
            ("gg".to_string(), MetricType::Gauge, 2),
            ("ss".to_string(), MetricType::Set, 2),
            ("tt".to_string(), MetricType::Histogram, 2),
        ]
    );
    // An idle interval leaves an empty top list.
    reg.end_interval();
    assert!(reg.top().is_empty());
}

#[test]
fn top_keeps_only_the_hottest() {
    let opts = AggregateOptions::default();
    let mut reg = Registry::new(&opts);
    let mut a = Shard::new(&opts);
    for i in 0..(TOP_KEPT + 50) {
        for _ in 0..(i % 7) + 1 {
            a.insert(&c(&format!("k{i}"), 1.0, 1.0));
        }
    }
    reg.merge(a.take());
    reg.end_interval();
    let top = reg.top();
    assert_eq!(top.len(), TOP_KEPT);
    assert_eq!(top[0].hits, 7);
    assert!(top.windows(2).all(|w| w[0].hits >= w[1].hits));
}

#[test]
fn remove_and_set_members() {
    let opts = AggregateOptions::default();
    let mut reg = registry(&opts, &[c("a", 1.0, 1.0), s("s", "x"), s("s", "y")]);
    let mut members: Vec<&[u8]> = reg.set_members(b"s").unwrap().collect();
    members.sort();
    assert_eq!(members, [&b"x"[..], b"y"]);
    assert!(reg.set_members(b"a").is_none());
    assert!(!reg.remove(MetricType::Gauge, b"a"));
    assert!(reg.remove(MetricType::Counter, b"a"));
    assert_eq!(reg.counter(b"a"), None);
    assert!(reg.remove(MetricType::Set, b"s"));
    assert!(reg.is_empty());
}

fn limited(max: usize, prefixes: &[(&str, usize)]) -> AggregateOptions {
    AggregateOptions {
        limits: SeriesLimits {
            max_series: max,
            prefixes: prefixes
                .iter()
                .map(|&(p, m)| PrefixLimit {
                    prefix: p.into(),
                    max: m,
                })
                .collect(),
        },
        ..AggregateOptions::default()
    }
}

fn refused(r: Inserted) -> bool {
    matches!(r, Inserted::Refused(_))
}

#[test]
fn new_series_past_max_series_are_refused_and_existing_ones_go_on() {
    let opts = limited(3, &[]);
    let mut reg = Registry::new(&opts);
    let mut shard = Shard::new(&opts);
    assert_eq!(shard.insert(&c("a", 1.0, 1.0)), Inserted::Ok);
    assert_eq!(shard.insert(&g("b", 1.0)), Inserted::Ok);
    assert_eq!(
        shard.insert(&t("c", MetricType::Timer, 1.0, 1.0)),
        Inserted::Ok
    );
    assert!(refused(shard.insert(&s("d", "x"))));
    // A counter named like the gauge is another series.
    assert!(refused(shard.insert(&c("b", 1.0, 1.0))));
    assert_eq!(shard.insert(&c("a", 2.0, 1.0)), Inserted::Ok);
    reg.merge(shard.take());
    reg.end_interval();
    assert_eq!(reg.live_series(), Some(3));

    // Next interval: the shard is empty but the registry knows a, b and c.
    assert_eq!(shard.insert(&c("a", 5.0, 1.0)), Inserted::Ok);
    assert_eq!(shard.insert(&gd("b", 1.0)), Inserted::Ok);
    assert_eq!(
        shard.insert(&t("c", MetricType::Histogram, 2.0, 1.0)),
        Inserted::Ok
    );
    assert!(refused(shard.insert(&c("e", 1.0, 1.0))));
    reg.merge(shard.take());
    assert_eq!(reg.counter(b"a"), Some(5.0));
    assert_eq!(reg.gauge(b"b"), Some(2.0));
    assert_eq!(reg.counter(b"e"), None);
    assert_eq!(reg.len(), 3);
}

#[test]
fn deleted_series_free_their_slot() {
    let opts = AggregateOptions {
        delete_counters: true,
        ..limited(2, &[])
    };
    let mut reg = Registry::new(&opts);
    let mut shard = Shard::new(&opts);
    shard.insert(&c("a", 1.0, 1.0));
    shard.insert(&g("g", 1.0));
    assert!(refused(shard.insert(&c("b", 1.0, 1.0))));
    reg.merge(shard.take());
    reg.end_interval();
    // The idle counter was deleted: its slot is free.
    assert_eq!(reg.live_series(), Some(1));
    assert_eq!(shard.insert(&c("b", 1.0, 1.0)), Inserted::Ok);
    reg.merge(shard.take());
    // The admin console's delete frees a slot too.
    assert!(reg.remove(MetricType::Gauge, b"g"));
    assert_eq!(reg.live_series(), Some(1));
    assert_eq!(shard.insert(&s("set", "m")), Inserted::Ok);
    assert!(refused(shard.insert(&s("set2", "m"))));
}

#[test]
fn a_series_deleted_while_pending_in_a_shard_is_counted_again() {
    let opts = AggregateOptions {
        delete_counters: true,
        ..limited(1, &[])
    };
    let mut reg = Registry::new(&opts);
    let mut shard = Shard::new(&opts);
    shard.insert(&c("a", 1.0, 1.0));
    reg.merge(shard.take());
    // The next value arrives after the take, before the delete.
    assert_eq!(shard.insert(&c("a", 1.0, 1.0)), Inserted::Ok);
    reg.end_interval();
    assert_eq!(reg.live_series(), Some(0));
    reg.merge(shard.take());
    assert_eq!(reg.counter(b"a"), Some(1.0));
    assert_eq!(reg.live_series(), Some(1));
    assert!(refused(shard.insert(&c("b", 1.0, 1.0))));
}

#[test]
fn prefix_limits_apply_to_the_longest_prefix() {
    let opts = limited(0, &[("app.", 2), ("app.web.", 1)]);
    let _reg = Registry::new(&opts);
    let mut shard = Shard::new(&opts);
    assert_eq!(shard.insert(&c("app.web.a", 1.0, 1.0)), Inserted::Ok);
    match shard.insert(&c("app.web.b", 1.0, 1.0)) {
        Inserted::Refused(r) => {
            assert_eq!(r.prefix.as_deref(), Some("app.web."));
            assert_eq!(r.limit, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(shard.insert(&c("app.x", 1.0, 1.0)), Inserted::Ok);
    assert_eq!(shard.insert(&c("app.y", 1.0, 1.0)), Inserted::Ok);
    assert!(refused(shard.insert(&c("app.z", 1.0, 1.0))));
    for i in 0..100 {
        assert_eq!(
            shard.insert(&c(&format!("other.{i}"), 1.0, 1.0)),
            Inserted::Ok
        );
    }
}

#[test]
fn new_limits_from_a_reload_reach_old_and_new_shards() {
    let old = limited(0, &[]);
    let mut reg = Registry::new(&old);
    let mut old_shard = Shard::new(&old);
    for i in 0..5 {
        old_shard.insert(&c(&format!("k{i}"), 1.0, 1.0));
    }
    reg.merge(old_shard.take());
    assert_eq!(reg.live_series(), None);

    // A reload: new options (a new link), a shard for a new listener.
    let new = limited(6, &[]);
    let mut new_shard = Shard::new(&new);
    reg.set_options(&new);
    assert_eq!(reg.live_series(), Some(5));
    assert_eq!(old_shard.insert(&c("k0", 1.0, 1.0)), Inserted::Ok);
    assert_eq!(old_shard.insert(&c("n1", 1.0, 1.0)), Inserted::Ok);
    assert!(refused(new_shard.insert(&c("n2", 1.0, 1.0))));
    assert_eq!(new_shard.insert(&c("n1", 1.0, 1.0)), Inserted::Ok);

    // Limits off again: everything goes.
    let off = limited(0, &[]);
    reg.set_options(&off);
    assert_eq!(old_shard.insert(&c("n3", 1.0, 1.0)), Inserted::Ok);
    assert_eq!(new_shard.insert(&c("n4", 1.0, 1.0)), Inserted::Ok);
}

#[test]
fn statsyards_own_series_do_not_count_against_rebuilt_limits() {
    let old = limited(5, &[]);
    let mut reg = Registry::new(&old);
    let mut shard = Shard::new(&old);
    for i in 0..5 {
        shard.insert(&c(&format!("k{i}"), 1.0, 1.0));
    }
    reg.merge(shard.take());
    // What the flusher adds at every flush.
    for name in ["statsd.bad_lines_seen", "statsd.statsyard.series_dropped"] {
        reg.add_counter(name.as_bytes(), 0.0);
    }
    reg.set_gauge(b"statsd.timestamp_lag", 0.0);
    assert_eq!(reg.live_series(), Some(5));
    // A reload that raises the limit rebuilds the state from what is held:
    // the client's five series, not statsyard's own three.
    let new = limited(7, &[]);
    reg.set_options(&new);
    assert_eq!(reg.live_series(), Some(5));
    let mut shard = Shard::new(&new);
    assert_eq!(shard.insert(&c("n1", 1.0, 1.0)), Inserted::Ok);
    assert_eq!(shard.insert(&c("n2", 1.0, 1.0)), Inserted::Ok);
    assert!(refused(shard.insert(&c("n3", 1.0, 1.0))));
    // Deleting one of statsyard's own frees no client slot.
    assert!(reg.remove(MetricType::Counter, b"statsd.bad_lines_seen"));
    assert_eq!(reg.live_series(), Some(7));
}

#[test]
fn ten_thousand_new_keys_against_a_small_limit() {
    let opts = limited(100, &[]);
    let mut reg = Registry::new(&opts);
    let mut shard = Shard::new(&opts);
    let mut dropped = 0;
    for i in 0..10_000 {
        dropped += refused(shard.insert(&c(&format!("r.{i}"), 1.0, 1.0))) as usize;
    }
    assert_eq!(dropped, 9_900);
    reg.merge(shard.take());
    assert_eq!(reg.len(), 100);
}

/// Everything a registry holds, comparable bit for bit.
fn contents(reg: &Registry) -> Vec<String> {
    let mut out: Vec<String> = reg
        .counters()
        .map(|(k, v)| format!("c {k} {:x}", v.to_bits()))
        .chain(
            reg.gauges()
                .map(|(k, v)| format!("g {k} {:x}", v.to_bits())),
        )
        .chain(reg.timers().map(|(k, t)| {
            let samples = match t.samples() {
                TimerSamples::Exact(s) => format!("{s:?}"),
                TimerSamples::Hist(h) => format!("hist {}", h.len()),
            };
            format!("t {k} {:?} {:x} {samples}", t.kind(), t.count().to_bits())
        }))
        .chain(reg.sets().map(|(k, n)| format!("s {k} {n}")))
        .collect();
    out.sort();
    out
}

/// Values pushed through the queue (and drained) aggregate exactly as
/// values inserted one by one: same values bit for bit, same order within
/// a series, same refusals with the same keys.
#[test]
fn queued_values_aggregate_like_inserted_ones() {
    // Few keys, so that a series recurs while its earlier values are still
    // queued; some too long to queue; every type.
    let long = "l".repeat(100);
    let keys = ["a", "b", "c.d", "e;t=1", long.as_str(), "f"];
    let mut x: u64 = 0x853c_49e6_748f_ea9b;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut values = Vec::new();
    for _ in 0..5000 {
        let key = keys[next(keys.len() as u64) as usize];
        let v = (next(2000) as f64 - 1000.0) / 7.0;
        let rate = [1.0, 0.5, 0.1][next(3) as usize];
        values.push(match next(7) {
            0 => c(key, v, rate),
            1 => g(key, v),
            2 => gd(key, v),
            3 => t(key, MetricType::Timer, v.abs(), rate),
            4 => t(key, MetricType::Histogram, v.abs(), rate),
            5 => s(key, ["x", "y", "z"][next(3) as usize]),
            _ => c(key, 1.0, 1.0),
        });
    }
    for opts in [AggregateOptions::default(), limited(9, &[("c", 1)])] {
        let mut reg_one = Registry::new(&opts);
        let mut one = Shard::new(&opts);
        let mut refused_one = Vec::new();
        // A link of its own: each registry publishes its limits' state to
        // the shards of its link.
        let opts_queued = AggregateOptions {
            link: AdmissionLink::default(),
            ..opts.clone()
        };
        let mut reg_queued = Registry::new(&opts_queued);
        let mut queued = Shard::new(&opts_queued);
        let mut refused_queued = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if let Inserted::Refused(r) = one.insert(v) {
                refused_one.push((v.key.to_vec(), r));
            }
            queued.push(v, |key, r| refused_queued.push((key.to_vec(), r)));
            // Drained as a listener drains: at the end of each packet.
            if i % 37 == 36 {
                queued.drain(|key, r| refused_queued.push((key.to_vec(), r)));
            }
            if i % 1000 == 999 {
                queued.drain(|key, r| refused_queued.push((key.to_vec(), r)));
                reg_one.merge(one.take());
                reg_queued.merge(queued.take());
                assert_eq!(contents(&reg_one), contents(&reg_queued));
                reg_one.end_interval();
                reg_queued.end_interval();
            }
        }
        assert_eq!(refused_one, refused_queued);
        // The default limit refuses nothing here; the small one does.
        assert_eq!(opts.limits.max_series < 100, !refused_one.is_empty());
    }
}
