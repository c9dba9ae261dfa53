//! An output written outside the crate, through the public output surface
//! alone, as docs/architecture.md ("Adding an output") describes it: a kind
//! with its own `[[sink]]` table, validated into its settings, built into a
//! task that takes every flush and an observer that sees the registry.
//! If the guide goes stale, this stops compiling or fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statsyard::check::Bad;
use statsyard::sink::{
    keys_of, BoxFuture, BuildCx, Built, FlushView, Kinds, Observer, Sink, SinkConfig, SinkError,
    SinkKind, SinkMsg, ValidateCx,
};
use statsyard::stats::incr;
use tokio::sync::mpsc;

use crate::support::{send_udp, Server};

/// What the test reads back: the counters the sink was handed, and what the
/// observer saw in the registry.
#[derive(Debug, Default)]
struct Seen {
    counters: Vec<(String, f64)>,
    registry: Vec<f64>,
}

/// `[[sink]] type = "collect"`.
struct Collect(Arc<Mutex<Seen>>);

/// Its table: one key of its own.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCollect {
    /// Only counters whose name starts with this.
    prefix: Option<String>,
}

/// Its settings. Equality is what a reload compares.
#[derive(Debug, Clone)]
struct CollectConfig {
    prefix: String,
    seen: Arc<Mutex<Seen>>,
}

impl PartialEq for CollectConfig {
    fn eq(&self, o: &Self) -> bool {
        self.prefix == o.prefix && Arc::ptr_eq(&self.seen, &o.seen)
    }
}

impl SinkKind for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }

    fn keys(&self) -> Vec<String> {
        keys_of::<RawCollect>()
    }

    fn validate(
        &self,
        table: toml::Table,
        cx: &ValidateCx<'_>,
    ) -> Result<Arc<dyn SinkConfig>, Bad> {
        let raw: RawCollect = cx.table(table)?;
        let prefix = raw
            .prefix
            .ok_or_else(|| cx.bad("prefix", "a collect sink needs a `prefix`"))?;
        Ok(Arc::new(CollectConfig {
            prefix,
            seen: self.0.clone(),
        }))
    }
}

impl SinkConfig for CollectConfig {
    fn build(&self, cx: &BuildCx) -> Result<Built, SinkError> {
        Ok(Built {
            sink: Some(Box::new(CollectSink {
                name: cx.name.clone(),
                config: self.clone(),
                stats: cx.stats.clone(),
            })),
            observer: Some(Box::new(Watch(self.clone()))),
            scrape: None,
        })
    }
}

struct CollectSink {
    name: String,
    config: CollectConfig,
    stats: Arc<statsyard::stats::SinkStats>,
}

impl Sink for CollectSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, mut rx: mpsc::Receiver<SinkMsg>) -> BoxFuture {
        Box::pin(async move {
            while let Some(msg) = rx.recv().await {
                let SinkMsg::Flush(batch) = msg else { continue };
                let mut seen = self.config.seen.lock().unwrap();
                for c in &batch.counters {
                    let key = c.key.to_string_lossy();
                    if key.starts_with(&self.config.prefix) {
                        seen.counters.push((key.into_owned(), c.value));
                        incr(&self.stats.lines_sent, 1);
                    }
                }
                incr(&self.stats.flushes_sent, 1);
            }
        })
    }
}

/// Sees every flush with the registry, on the flusher thread.
struct Watch(CollectConfig);

impl Observer for Watch {
    fn observe(&mut self, flush: &FlushView<'_>) {
        if let Some(v) = flush.registry.counter(b"surface.hits") {
            self.0.seen.lock().unwrap().registry.push(v);
        }
    }
}

#[test]
fn an_output_built_outside_the_crate_takes_flushes_and_observes_the_registry() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let kinds = Kinds::default().with(Arc::new(Collect(seen.clone())));
    let text = |extra: &str| {
        format!(
            "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[flush]\ninterval = \"200ms\"\n\
             [http]\nenabled = false\n[admin]\nenabled = false\n\
             [[sink]]\ntype = \"collect\"\nname = \"mine\"\n{extra}"
        )
    };
    // Its table is checked by its own validation, with the key named.
    let parse = |t: &str| statsyard::config::toml::from_str_with(t, "surface.toml", &kinds);
    let e = parse(&text(""))
        .expect_err("prefix is required")
        .to_string();
    assert!(
        e.contains("sink[0].prefix") && e.contains("needs a `prefix`"),
        "{e}"
    );
    let e = parse(&text("address = \"x:1\""))
        .expect_err("not its key")
        .to_string();
    assert!(
        e.contains("sink[0].address") && e.contains("its keys: type, name, queue, prefix"),
        "{e}"
    );
    // The built-in kinds alone do not know it.
    let e = statsyard::config::toml::from_str(&text("prefix = \"surface.\""), "surface.toml")
        .expect_err("unknown type")
        .to_string();
    assert!(e.contains("unknown sink type \"collect\""), "{e}");

    let config = parse(&text("prefix = \"surface.\"")).expect("valid");
    let server = Server::start(config);
    send_udp(
        server.udp(),
        &[b"surface.hits:3|c\nother:1|c", b"surface.hits:4|c"],
    );
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let s = seen.lock().unwrap();
            let total: f64 = s.counters.iter().map(|(_, v)| v).sum();
            if total == 7.0 && s.registry.contains(&7.0) {
                assert!(s.counters.iter().all(|(k, _)| k == "surface.hits"));
                break;
            }
        }
        assert!(Instant::now() < end, "the output never saw the 7 hits");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its counters are listed with every sink's.
    let names: Vec<String> = server
        .running()
        .stats
        .sinks()
        .iter()
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(names, ["mine"]);
    server.stop();
}
