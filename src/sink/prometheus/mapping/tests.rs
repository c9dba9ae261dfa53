//! Mapping features one by one.

use super::*;

fn mapping(yaml: &str) -> Mapping {
    let (m, unsupported) = Mapping::from_yaml(yaml).unwrap();
    assert!(unsupported.is_empty(), "{unsupported:?}");
    m
}

/// (rules, statsd name, class, expected (name, labels) or None).
#[test]
fn matching_table() {
    type Case = (
        &'static str,
        &'static str,
        MetricClass,
        Option<(&'static str, &'static [(&'static str, &'static str)])>,
    );
    let cases: &[Case] = &[
        // Glob: `*` is one dot component, `$n` and `${n}` expand.
        (
            "- match: a.*.c\n  name: x_$1\n  labels: {p: \"${1}\"}",
            "a.b.c",
            MetricClass::Counter,
            Some(("x_b", &[("p", "b")])),
        ),
        ("- match: a.*.c\n  name: x", "a.b.d.c", MetricClass::Counter, None),
        ("- match: a.*\n  name: x", "a.b.c", MetricClass::Counter, None),
        // Partial-component wildcards.
        (
            "- match: a.b_*\n  name: x_$1",
            "a.b_c",
            MetricClass::Gauge,
            Some(("x_c", &[])),
        ),
        // Glob order: first in the file wins.
        (
            "- match: a.*\n  name: first\n- match: a.b\n  name: second",
            "a.b",
            MetricClass::Gauge,
            Some(("first", &[])),
        ),
        // Globs before regexes, whatever the file order.
        (
            "- match: .*\n  match_type: regex\n  name: regex\n- match: a.b\n  name: glob",
            "a.b",
            MetricClass::Gauge,
            Some(("glob", &[])),
        ),
        // Regex: unanchored, as Go's; groups by number and by name.
        (
            "- match: 'b\\.(\\w+)'\n  match_type: regex\n  name: r_$1\n  labels: {n: '$1'}",
            "a.b.c",
            MetricClass::Observer,
            Some(("r_c", &[("n", "c")])),
        ),
        (
            "- match: '^(?P<svc>\\w+)\\.t$'\n  match_type: regex\n  name: t\n  labels: {svc: '${svc}'}",
            "api.t",
            MetricClass::Observer,
            Some(("t", &[("svc", "api")])),
        ),
        // match_metric_type.
        (
            "- match: a\n  match_metric_type: counter\n  name: c\n- match: a\n  name: other",
            "a",
            MetricClass::Gauge,
            Some(("other", &[])),
        ),
        (
            "- match: a\n  match_metric_type: observer\n  name: o",
            "a",
            MetricClass::Observer,
            Some(("o", &[])),
        ),
        (
            "- match: a\n  match_metric_type: observer\n  name: o",
            "a",
            MetricClass::Counter,
            None,
        ),
    ];
    for (rules, name, class, want) in cases {
        let m = mapping(&format!("mappings:\n{rules}\n"));
        let got = m.map(name, *class);
        match (got, want) {
            (None, None) => {}
            (Some(got), Some((wname, wlabels))) => {
                assert_eq!(got.name, *wname, "{rules} / {name}");
                let labels: Vec<(&str, &str)> = got
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(labels, *wlabels, "{rules} / {name}");
            }
            (got, want) => panic!("{rules} / {name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn glob_disable_ordering_prefers_literals() {
    let m = mapping(
        "defaults:\n  glob_disable_ordering: true\nmappings:\n- match: a.*\n  name: wild\n- match: a.b\n  name: exact\n",
    );
    assert_eq!(m.map("a.b", MetricClass::Gauge).unwrap().name, "exact");
    assert_eq!(m.map("a.c", MetricClass::Gauge).unwrap().name, "wild");
}

#[test]
fn options_and_defaults() {
    let m = mapping(
        r#"
defaults:
  observer_type: histogram
  buckets: [1, 2]
  quantiles: [{quantile: 0.5, error: 0.1}]
  ttl: 1m30s
  match_type: glob
mappings:
- match: a
  name: a
  action: drop
- match: b
  name: b
  timer_type: summary
  summary_options:
    quantiles: [{quantile: 0.75}]
  ttl: 0
  help: "B."
- match: c
  name: c
  histogram_options:
    buckets: [5, 0.5]
- match: d
  name: d
"#,
    );
    assert!(m.map("a", MetricClass::Counter).unwrap().drop);
    let b = m.map("b", MetricClass::Observer).unwrap();
    assert_eq!(b.observer, Some(ObserverType::Summary));
    assert_eq!(b.quantiles.unwrap()[0].quantile, 0.75);
    assert_eq!(b.ttl, Some(Duration::ZERO));
    assert_eq!(b.help.as_deref(), Some("B."));
    let c = m.map("c", MetricClass::Observer).unwrap();
    assert_eq!(c.buckets, Some(vec![0.5, 5.0]));
    assert_eq!(c.observer, Some(ObserverType::Histogram));
    let d = m.map("d", MetricClass::Observer).unwrap();
    assert_eq!(d.ttl, Some(Duration::from_secs(90)));
    assert_eq!(d.buckets, Some(vec![1.0, 2.0]));
    assert_eq!(m.defaults().quantiles.as_ref().unwrap()[0].error, 0.1);
}

#[test]
fn unsupported_keys_are_named() {
    let (_, unsupported) = Mapping::from_yaml(
        r#"
defaults:
  summary_options: {max_age: 1m, quantiles: [{quantile: 0.5}]}
  parse_dogstatsd_tags: true
mappings:
- match: a
  name: a
  mystery: 1
"#,
    )
    .unwrap();
    assert_eq!(
        unsupported,
        [
            "defaults: max_age",
            "defaults.parse_dogstatsd_tags",
            "mappings[0].mystery"
        ]
    );
}

#[test]
fn errors() {
    for (yaml, want) in [
        ("mappings: [{name: x}]", "no `match`"),
        ("mappings: [{match: a}]", "no `name`"),
        (
            "mappings: [{match: 'a..b', name: x}]",
            "empty dot component",
        ),
        (
            "mappings: [{match: '(', match_type: regex, name: x}]",
            "bad match",
        ),
        (
            "mappings: [{match: a, name: x, observer_type: pie}]",
            "unknown observer type",
        ),
        (
            "mappings: [{match: a, name: x, action: keep}]",
            "unknown action",
        ),
        ("mappings: [{match: a, name: x, ttl: soon}]", "bad duration"),
        (
            "mappings: [{match: a, name: x, labels: {'1a': b}}]",
            "invalid label name",
        ),
        (
            "mappings: [{match: a, name: x, quantiles: [{quantile: 2}]}]",
            "not in [0, 1]",
        ),
        ("mappings: 3", "not a list"),
        ("[", "not valid"),
        // What statsd_exporter refuses too.
        (
            "mappings: [{match: 'bad!!metric-line.*.*', name: x}]",
            "a glob has letters",
        ),
        (
            "mappings: [{match: 'bad--metric-line.*.*', name: x}]",
            "between two other characters",
        ),
        ("mappings: [{match: '0a.b', name: x}]", "cannot start with a digit"),
        ("mappings: [{match: 'a.*', name: '0foo'}]", "invalid name"),
        ("mappings: [{match: 'a.*', name: 'a-b'}]", "invalid name"),
        ("mappings: [{match: 'a.*', name: 'a_${1'}]", "invalid name"),
        (
            "mappings: [{match: a, name: x, quantiles: [{quantile: 0.5}], summary_options: {quantiles: [{quantile: 0.5}]}}]",
            "cannot both be set",
        ),
        (
            "mappings: [{match: a, name: x, buckets: [1], histogram_options: {buckets: [2]}}]",
            "cannot both be set",
        ),
        (
            "mappings: [{match: a, name: x, observer_type: histogram, summary_options: {}}]",
            "summary_options` on a histogram",
        ),
        (
            "defaults: {observer_type: summary}\nmappings: [{match: a, name: x, histogram_options: {buckets: [1]}}]",
            "histogram_options` on a summary",
        ),
    ] {
        let err = Mapping::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

/// Names and globs statsd_exporter accepts, with statsyard's extensions.
#[test]
fn valid_names_and_globs() {
    let m = mapping(
        "mappings:\n- match: 'test.my-dispatch-host01.*.2xx.*'\n  name: 'a_${1}_$2'\n\
         - match: 'x.b_*'\n  name: '_b$1'\n\
         - match: '^(?P<svc>\\w+)\\.r$'\n  match_type: regex\n  name: '${svc}_r'",
    );
    assert_eq!(
        m.map("test.my-dispatch-host01.p.2xx.q", MetricClass::Counter)
            .unwrap()
            .name,
        "a_p_q"
    );
    assert_eq!(m.map("x.b_c", MetricClass::Counter).unwrap().name, "_bc");
    assert_eq!(m.map("api.r", MetricClass::Counter).unwrap().name, "api_r");
}

/// An empty list of buckets or quantiles takes the defaults, as in statsd_exporter.
#[test]
fn empty_lists_take_the_defaults() {
    let m = mapping(
        "defaults:\n  histogram_options:\n    buckets: []\n  quantiles: []\n\
         mappings:\n- match: a\n  name: a\n  buckets: []\n  summary_options:\n    quantiles: []",
    );
    assert_eq!(m.defaults().buckets, None);
    assert_eq!(m.defaults().quantiles, None);
    let a = m.map("a", MetricClass::Observer).unwrap();
    assert_eq!((a.buckets, a.quantiles), (None, None));
}

#[test]
fn go_durations() {
    for (s, want) in [
        ("0", Some(0.0)),
        ("10s", Some(10.0)),
        ("1m30s", Some(90.0)),
        ("1.5h", Some(5400.0)),
        ("250ms", Some(0.25)),
        ("", None),
        ("10", None),
        ("5d", None),
    ] {
        assert_eq!(parse_go_duration(s).map(|d| d.as_secs_f64()), want, "{s}");
    }
}
