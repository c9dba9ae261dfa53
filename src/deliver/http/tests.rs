//! The HTTP engine against a real HTTP server on loopback (axum), scripted
//! to answer 204, 500, 429 with `Retry-After`, 400, and to go down and come
//! back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};

use super::*;
use crate::deliver::testing::{self, eventually, free_addr};
use crate::stats::get;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    content_type: String,
    content_encoding: Option<String>,
    authorization: Option<String>,
    extra: Option<String>,
}

/// What the server answers: the scripted answers first, then 204.
#[derive(Default)]
struct Script {
    answers: VecDeque<(u16, Option<&'static str>, &'static str)>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Script>>;

async fn write(
    axum::extract::State(s): axum::extract::State<Shared>,
    headers: AxumHeaders,
    body: axum::body::Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let mut s = s.lock().unwrap();
    s.seen.push(Seen {
        body: String::from_utf8_lossy(&body).into_owned(),
        content_type: h("content-type").unwrap_or_default(),
        content_encoding: h("content-encoding"),
        authorization: h("authorization"),
        extra: h("x-extra"),
    });
    let (status, retry_after, text) = s.answers.pop_front().unwrap_or((204, None, ""));
    let status = AxumStatus::from_u16(status).unwrap();
    match retry_after {
        Some(v) => (status, [("retry-after", v)], text).into_response(),
        None => (status, text).into_response(),
    }
}

/// A server on loopback; [`Server::stop`] takes it down, connections and all.
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serve on `addr` (port 0: a free one).
async fn serve(addr: SocketAddr, s: Shared) -> Server {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/write", axum::routing::post(write))
        .with_state(s);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Server { addr, stop, task }
}

fn script(answers: &[(u16, Option<&'static str>, &'static str)]) -> Shared {
    Arc::new(Mutex::new(Script {
        answers: answers.iter().copied().collect(),
        seen: Vec::new(),
    }))
}

fn seen(s: &Shared) -> Vec<Seen> {
    s.lock().unwrap().seen.clone()
}

fn bodies(s: &Shared) -> Vec<String> {
    seen(s).into_iter().map(|r| r.body).collect()
}

fn config(addr: SocketAddr) -> HttpConfig {
    HttpConfig {
        sink: "test".into(),
        url: format!("http://{addr}/write"),
        auth: None,
        headers: Vec::new(),
        buffer_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        max_retries: 2,
        shutdown_timeout: Duration::from_secs(5),
        spool: None,
        tls: None,
    }
}

/// One body per message: the text, two points, plain text.
struct Lines;

impl Encoder for Lines {
    type Msg = &'static str;
    fn encode(&mut self, msg: &'static str, out: &mut Vec<Body>) {
        out.push(Body {
            data: Bytes::from_static(msg.as_bytes()),
            content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
            content_encoding: None,
            points: 2,
        });
    }
}

fn spawn(
    cfg: HttpConfig,
) -> (
    mpsc::Sender<&'static str>,
    Arc<SinkStats>,
    tokio::task::JoinHandle<()>,
) {
    let out = HttpOutput::new(cfg).unwrap();
    testing::spawn(|stats, rx| out.run(stats, rx, Lines))
}

#[tokio::test]
async fn delivers_in_order_with_the_bodys_and_the_configs_headers() {
    let s = script(&[]);
    let server = serve("127.0.0.1:0".parse().unwrap(), s.clone()).await;
    let addr = server.addr;
    let mut cfg = config(addr);
    cfg.auth = Some(Auth::Basic {
        user: "u".into(),
        password: "p".into(),
    });
    cfg.headers = vec![("X-Extra".into(), "yes".into())];
    let (tx, stats, task) = spawn(cfg);
    for m in ["a 1", "b 2", "c 3"] {
        tx.send(m).await.unwrap();
    }
    drop(tx);
    task.await.unwrap();
    assert_eq!(bodies(&s), ["a 1", "b 2", "c 3"]);
    let first = &seen(&s)[0];
    assert_eq!(first.content_type, "text/plain; charset=utf-8");
    assert_eq!(first.content_encoding, None);
    // base64("u:p")
    assert_eq!(first.authorization.as_deref(), Some("Basic dTpw"));
    assert_eq!(first.extra.as_deref(), Some("yes"));
    assert_eq!(get(&stats.lines_sent), 6);
    assert_eq!(get(&stats.bytes_sent), 9);
    // One body per message, each a flush.
    assert_eq!(get(&stats.flushes_sent), 3);
    assert_eq!(get(&stats.errors), 0);
    assert_eq!(get(&stats.dropped), 0);
    assert_eq!(get(&stats.buffered_bytes), 0);
}

#[tokio::test]
async fn a_5xx_is_retried_and_a_bad_batch_given_up_after_max_retries() {
    // The first body: 500 twice then 204. The second: 503 on every try
    // (max_retries = 2: three tries), then given up; the third goes on.
    let s = script(&[
        (500, None, "oops"),
        (500, None, "oops"),
        (204, None, ""),
        (503, None, "down"),
        (503, None, "down"),
        (503, None, "down"),
    ]);
    let server = serve("127.0.0.1:0".parse().unwrap(), s.clone()).await;
    let addr = server.addr;
    let (tx, stats, task) = spawn(config(addr));
    for m in ["one", "two", "three"] {
        tx.send(m).await.unwrap();
    }
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        bodies(&s),
        ["one", "one", "one", "two", "two", "two", "three"]
    );
    assert_eq!(get(&stats.errors), 5);
    assert_eq!(get(&stats.retries), 4);
    assert_eq!(get(&stats.refused), 2, "the points of `two`");
    assert_eq!(get(&stats.lines_sent), 4);
    assert_eq!(get(&stats.dropped), 0);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let s = script(&[(429, Some("1"), "slow down")]);
    let server = serve("127.0.0.1:0".parse().unwrap(), s.clone()).await;
    let addr = server.addr;
    let mut cfg = config(addr);
    // Far below the server's wish: Retry-After must win.
    cfg.max_retries = 0;
    let (tx, stats, task) = spawn(cfg);
    let started = Instant::now();
    tx.send("x").await.unwrap();
    eventually("delivery after the wait", || get(&stats.lines_sent) == 2).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(bodies(&s), ["x", "x"]);
    assert_eq!(get(&stats.refused), 0, "429 is not the batch's fault");
    assert_eq!(get(&stats.retries), 1);
    drop(tx);
    task.await.unwrap();
}

#[tokio::test]
async fn a_4xx_is_refused_for_good_and_counted() {
    let s = script(&[(400, None, "unable to parse 'bad': missing field")]);
    let server = serve("127.0.0.1:0".parse().unwrap(), s.clone()).await;
    let addr = server.addr;
    let (tx, stats, task) = spawn(config(addr));
    tx.send("bad").await.unwrap();
    tx.send("good").await.unwrap();
    drop(tx);
    task.await.unwrap();
    assert_eq!(bodies(&s), ["bad", "good"], "never sent again");
    assert_eq!(get(&stats.refused), 2);
    assert_eq!(get(&stats.retries), 0);
    assert_eq!(get(&stats.errors), 0);
    assert_eq!(get(&stats.lines_sent), 2);
}

#[tokio::test]
async fn a_store_down_and_back_gets_everything_once_in_order_through_the_spool() {
    let addr = free_addr().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(addr);
    // One body in memory; the rest goes to disk.
    cfg.buffer_bytes = 1;
    cfg.spool = Some(SpoolConfig {
        dir: tmp.path().join("http"),
        max_bytes: 1 << 20,
        segment_bytes: 128,
    });
    let (tx, stats, task) = spawn(cfg);
    // The first body is tried (and fails) before the others come: it stays
    // in memory, ahead of everything spooled after it.
    tx.send("p0").await.unwrap();
    eventually("failed tries", || get(&stats.errors) >= 1).await;
    let sent = ["p0", "p1", "p2", "p3", "p4"];
    for m in &sent[1..] {
        tx.send(m).await.unwrap();
    }
    eventually("spooling", || get(&stats.spool.spooled_entries) == 3).await;
    assert_eq!(get(&stats.dropped), 0);

    let s = script(&[]);
    let server = serve(addr, s.clone()).await;
    eventually("delivery", || get(&stats.lines_sent) == 10).await;
    assert_eq!(bodies(&s), sent, "in order, once");
    assert_eq!(get(&stats.spool.replayed_entries), 3);
    assert_eq!(get(&stats.spool.held_entries), 0);
    // Replayed bodies keep their headers.
    assert!(seen(&s)
        .iter()
        .all(|r| r.content_type == "text/plain; charset=utf-8"));

    // Down again, then stopped: what is held is spooled for the next start.
    server.stop().await;
    tx.send("q0").await.unwrap();
    tx.send("q1").await.unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("spooled at once, not at the deadline")
        .unwrap();
    assert_eq!(get(&stats.dropped), 0);

    let mut cfg = config(addr);
    cfg.spool = Some(SpoolConfig {
        dir: tmp.path().join("http"),
        max_bytes: 1 << 20,
        segment_bytes: 128,
    });
    let s = script(&[]);
    let _server = serve(addr, s.clone()).await;
    let (tx, stats, task) = spawn(cfg);
    eventually("replay by the next engine", || get(&stats.lines_sent) == 4).await;
    tx.send("r0").await.unwrap();
    drop(tx);
    task.await.unwrap();
    assert_eq!(bodies(&s), ["q0", "q1", "r0"]);
}

#[tokio::test]
async fn without_a_spool_the_bound_and_the_deadline_drop_and_count() {
    let addr = free_addr().await;
    let mut cfg = config(addr);
    cfg.buffer_bytes = 4;
    cfg.shutdown_timeout = Duration::from_millis(200);
    let (tx, stats, task) = spawn(cfg);
    for m in ["aa", "bb", "cc", "dd"] {
        tx.send(m).await.unwrap();
    }
    // The front (tried) stays, so does the newest: two dropped.
    eventually("drops at the bound", || get(&stats.dropped) == 2).await;
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the deadline bounds shutdown")
        .unwrap();
    assert_eq!(get(&stats.dropped), 4);
    assert_eq!(get(&stats.lines_sent), 0);
    assert_eq!(get(&stats.buffered_bytes), 0);
}

#[test]
fn retry_after_in_seconds_or_as_a_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
    assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("-1", now), None);
}

#[test]
fn spooled_bodies_keep_their_headers() {
    let e = Entry {
        data: Bytes::from_static(b"\x00body"),
        lines: 3,
        tag: Headers {
            content_type: HeaderValue::from_static("application/x-protobuf"),
            content_encoding: Some(HeaderValue::from_static("snappy")),
            ends_flush: false,
        },
    };
    let (data, h) = Headers::unpack(Headers::pack(&e));
    assert_eq!(data, e.data);
    assert_eq!(h.content_type, "application/x-protobuf");
    assert_eq!(h.content_encoding.unwrap(), "snappy");
    assert!(!h.ends_flush);
    // The last body of a flush keeps that through the spool.
    let mut last = e.clone();
    last.tag.ends_flush = true;
    let (data, h) = Headers::unpack(Headers::pack(&last));
    assert_eq!(data, e.data);
    assert_eq!(h.content_encoding.unwrap(), "snappy");
    assert!(h.ends_flush);
    // A record that is not ours goes out as it is.
    let (data, h) = Headers::unpack(Bytes::from_static(b"raw"));
    assert_eq!(&data[..], b"raw");
    assert_eq!(h.content_type, "application/octet-stream");
}

#[test]
fn bad_urls_and_headers_are_refused_at_setup() {
    let mut cfg = config("127.0.0.1:1".parse().unwrap());
    cfg.url = "ftp://x/".into();
    assert!(matches!(
        HttpOutput::new(cfg.clone()),
        Err(HttpError::BadUrl { .. })
    ));
    cfg.url = "not a url".into();
    assert!(matches!(
        HttpOutput::new(cfg.clone()),
        Err(HttpError::BadUrl { .. })
    ));
    cfg.url = "https://example.invalid/api/v2/write".into();
    cfg.headers = vec![("bad header".into(), "x".into())];
    assert!(matches!(
        HttpOutput::new(cfg.clone()),
        Err(HttpError::BadHeader { .. })
    ));
    cfg.headers = vec![("Authorization".into(), "Token abc".into())];
    assert!(HttpOutput::new(cfg).is_ok());
}
