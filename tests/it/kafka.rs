//! The kafka output against librdkafka's mock cluster: a Kafka protocol
//! implementation in process (brokers on loopback ports), which a real
//! consumer reads back from, and whose brokers can be taken down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message};

use crate::stores::{poll, send_n, server_with, sink_stats};
use crate::support::send_udp;

const TOPIC: &str = "statsyard";

/// A consumer reading `TOPIC` from the start.
fn consumer(brokers: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "statsyard-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

/// Read until `done` holds for the sum of `value` per message key, up to
/// `timeout`.
fn read_until(
    c: &BaseConsumer,
    sums: &mut HashMap<String, f64>,
    timeout: Duration,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(sums) {
        assert!(Instant::now() < deadline, "read back: {sums:?}");
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(m) = m else {
            continue;
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
        assert_eq!(v["key"], key.as_str(), "the key is the series");
        *sums.entry(key).or_default() += v["value"].as_f64().unwrap_or(0.0);
    }
}

#[test]
fn messages_are_read_back_and_a_broker_outage_loses_nothing() {
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic(TOPIC, 3, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let list: Vec<String> = brokers.split(',').map(|b| format!("{b:?}")).collect();
    let spool = tempfile::tempdir().unwrap();
    let server = server_with(
        200,
        &format!(
            "[[sink]]\ntype = \"kafka\"\nbrokers = [{}]\ntopic = \"{TOPIC}\"\nformat = \"json\"\n\
             queue_messages = 20\nmessage_timeout = \"2s\"\ncompression = \"lz4\"\n\
             spool_dir = {:?}\noptions = {{ \"linger.ms\" = \"10\" }}\n",
            list.join(", "),
            spool.path().display().to_string()
        ),
    );
    let key = "bars.kafka.hits;env=prod";
    send_n(&server, "bars.kafka.hits:1|c|#env:prod", 25);
    std::thread::sleep(Duration::from_millis(300));
    send_n(&server, "bars.kafka.hits:1|c|#env:prod", 25);
    let c = consumer(&brokers);
    let mut sums = HashMap::new();
    read_until(&c, &mut sums, Duration::from_secs(30), |s| {
        s.get(key) == Some(&50.0)
    });

    // Every broker down: the producer's queue (20 messages) fills, the rest
    // goes to the spool; what times out in the producer goes there too.
    for id in 1..=3 {
        mock.broker_down(id).expect("broker down");
    }
    for _ in 0..6 {
        send_n(&server, "bars.kafka.hits:1|c|#env:prod", 5);
        std::thread::sleep(Duration::from_millis(250));
    }
    let s = poll(
        Duration::from_secs(10),
        "messages spooled",
        String::new,
        || {
            let s = sink_stats(&server, "kafka");
            (s["spool"]["spooled_entries"].as_u64() > Some(0)).then_some(s)
        },
    );
    assert_eq!(s["dropped"], 0, "{s}");
    for id in 1..=3 {
        mock.broker_up(id).expect("broker up");
    }
    read_until(&c, &mut sums, Duration::from_secs(60), |s| {
        s.get(key).is_some_and(|v| *v >= 80.0)
    });
    assert_eq!(sums[key], 80.0, "{sums:?}");
    let s = poll(
        Duration::from_secs(20),
        "the spool drains",
        || sink_stats(&server, "kafka").to_string(),
        || {
            let s = sink_stats(&server, "kafka");
            (s["spool"]["held_entries"] == 0).then_some(s)
        },
    );
    assert!(s["spool"]["replayed_entries"].as_u64() > Some(0), "{s}");
    assert_eq!(s["refused"], 0, "{s}");
    server.stop();
}

/// A DogStatsD event is one JSON message (`"type":"event"`), keyed by its
/// aggregation key, next to the series' messages.
#[test]
fn events_are_json_messages() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let server = server_with(
        200,
        &format!(
            "[[sink]]\ntype = \"kafka\"\nbrokers = [{brokers:?}]\ntopic = \"{TOPIC}\"\n\
             format = \"json\"\n"
        ),
    );
    send_udp(
        server.udp(),
        &[b"_e{6,4}:deploy|v1.2|h:web1|k:rollout|t:success|#env:prod\nbars.kafka.ev:1|c"],
    );
    let c = consumer(&brokers);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut event, mut series) = (None, false);
    while event.is_none() || !series {
        assert!(
            Instant::now() < deadline,
            "read back: event {event:?}, series {series}"
        );
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
        if v["type"] == "event" {
            event = Some((key, v));
        } else if v["key"] == "bars.kafka.ev" {
            series = true;
        }
    }
    let (key, v) = event.unwrap();
    assert_eq!(key, "rollout", "{v}");
    assert_eq!(v["title"], "deploy", "{v}");
    assert_eq!(v["text"], "v1.2", "{v}");
    assert_eq!(v["host"], "web1", "{v}");
    assert_eq!(v["alert_type"], "success", "{v}");
    assert_eq!(v["tags"], serde_json::json!(["env:prod"]), "{v}");
    let s = sink_stats(&server, "kafka");
    assert_eq!(s["refused"], 0, "{s}");
    server.stop();
}

/// Read `topic` from the start until `done` holds for the (key, payload)
/// pairs read so far, up to 30 s.
fn read_topic(
    brokers: &str,
    topic: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("statsyard-test-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while !done(&got) {
        assert!(Instant::now() < deadline, "{topic}: {got:?}");
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        got.push((
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        ));
    }
    got
}

/// The `graphite` and `influx` formats, read back: one Graphite line per
/// message keyed by its name, one line protocol point per series keyed by
/// the series; an event is a point of `events` in `influx` only.
#[test]
fn graphite_and_influx_formats_are_read_back() {
    let mock = MockCluster::new(1).expect("mock cluster");
    for t in ["fmt-graphite", "fmt-influx"] {
        mock.create_topic(t, 1, 1).expect("topic");
    }
    let brokers = mock.bootstrap_servers();
    let server = server_with(
        200,
        &format!(
            "[[sink]]\ntype = \"kafka\"\nname = \"g\"\nbrokers = [{brokers:?}]\n\
             topic = \"fmt-graphite\"\nformat = \"graphite\"\n\
             [[sink]]\ntype = \"kafka\"\nname = \"i\"\nbrokers = [{brokers:?}]\n\
             topic = \"fmt-influx\"\nformat = \"influx\"\n"
        ),
    );
    send_udp(
        server.udp(),
        &[b"bars.kafka.fmt:2|c|#env:prod\n_e{6,4}:deploy|v1.2|h:web1|#env:prod"],
    );
    let counts = "stats_counts.bars.kafka.fmt;env=prod";
    let g = read_topic(&brokers, "fmt-graphite", |got| {
        got.iter().any(|(k, _)| k == counts)
    });
    let (_, line) = g.iter().find(|(k, _)| k == counts).unwrap();
    assert!(line.starts_with(&format!("{counts} 2 ")), "{line:?}");
    assert!(line.ends_with('\n'), "{line:?}");
    assert!(
        g.iter().all(|(_, p)| !p.contains("deploy")),
        "no events in graphite: {g:?}"
    );
    let key = "bars.kafka.fmt;env=prod";
    let i = read_topic(&brokers, "fmt-influx", |got| {
        got.iter().any(|(k, _)| k == key) && got.iter().any(|(k, _)| k == "deploy")
    });
    let (_, point) = i.iter().find(|(k, _)| k == key).unwrap();
    assert!(
        point.starts_with("bars.kafka.fmt,env=prod,metric_type=counter value=2,rate="),
        "{point:?}"
    );
    let (_, event) = i.iter().find(|(k, _)| k == "deploy").unwrap();
    assert!(
        event.starts_with("events,alert_type=info,env=prod,host=web1,priority=normal title=\"deploy\",text=\"v1.2\" "),
        "{event:?}"
    );
    server.stop();
}
