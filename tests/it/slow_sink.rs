//! A sink whose destination accepts and then never reads delays neither the
//! other sinks' flushes nor ingest.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::support::{config, secs, Server};

/// What the good destination saw: the round markers, and per flush the
/// number of `stall.k*` counts (cheap to keep at thousands of lines a flush).
enum Seen {
    Round(String),
    Count(String, f64),
}

fn receiver() -> (SocketAddr, Receiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(c).lines() {
                    let Ok(line) = line else { return };
                    let mut f = line.split(' ');
                    let (Some(name), Some(value)) = (f.next(), f.next()) else {
                        continue;
                    };
                    let seen = if name == "stats.gauges.stall.round" {
                        Seen::Round(value.to_string())
                    } else if let Some(k) = name.strip_prefix("stats_counts.stall.") {
                        Seen::Count(k.to_string(), value.parse().unwrap())
                    } else {
                        continue;
                    };
                    if tx.send(seen).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn a_stalled_sink_delays_no_other_sink_and_no_ingest() {
    // Accepts connections and never reads them: once the socket buffers are
    // full, every write of that sink would block.
    // A small receive buffer (inherited by accepted sockets) makes it stall sooner.
    let stalled = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stalled.set_recv_buffer_size(4096).unwrap();
    stalled
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    stalled.listen(8).unwrap();
    let stalled: TcpListener = stalled.into();
    let stalled_addr = stalled.local_addr().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let until = done.clone();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        stalled.set_nonblocking(true).unwrap();
        let end = Instant::now() + secs(60);
        while Instant::now() < end && !until.load(std::sync::atomic::Ordering::Relaxed) {
            match stalled.accept() {
                Ok((c, _)) => conns.push(c),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        conns.len()
    });
    let (good_addr, good) = receiver();
    let mut counts = std::collections::HashMap::<String, f64>::new();
    let server = Server::start(config(&format!(
        r#"
[statsd]
udp = []
tcp = ["127.0.0.1:0"]
[flush]
interval = "500ms"
shutdown_timeout = "1s"
[http]
enabled = false
[admin]
enabled = false
[[sink]]
type = "graphite"
name = "stalled"
address = "{stalled_addr}"
buffer_bytes = 1048576
[[sink]]
type = "graphite"
name = "good"
address = "{}"
"#,
        good_addr
    )));
    // 10,000 series: about 600 KB of Graphite text per flush (idle counters
    // report 0). Behind a 4 KiB receive window the stalled destination's
    // socket buffers (the sender's grows to 4 MiB at most) fill within a
    // few flushes, and its writes block from then on.
    let mut tcp = TcpStream::connect(server.tcp()).unwrap();
    let mut batch = Vec::new();
    for k in 0..10_000 {
        writeln!(batch, "stall.k{k}:1|c").unwrap();
    }
    tcp.write_all(&batch).unwrap();
    // Then one marker per round, each in its own flush window.
    let rounds = 10;
    let started = Instant::now();
    for r in 0..rounds {
        tcp.write_all(format!("stall.round:{}|g\n", r + 1).as_bytes())
            .unwrap();
        let want = (r + 1).to_string();
        let end = Instant::now() + secs(5);
        loop {
            match good.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(Seen::Round(v)) if v == want => break,
                Ok(Seen::Round(_)) => {}
                Ok(Seen::Count(k, v)) => *counts.entry(k).or_default() += v,
                Err(_) => panic!("round {want} did not arrive at the good sink in 5 s"),
            }
        }
    }
    let took = started.elapsed();
    // Every marker reached the good sink at the flush cadence: ten 500 ms
    // flushes, with room for a loaded machine. A stalled sink that blocked
    // the flusher would stop them altogether.
    assert!(took < secs(12), "good sink fell behind: {took:?}");
    // Every line was taken in by ingest and counted once.
    while let Ok(s) = good.try_recv() {
        if let Seen::Count(k, v) = s {
            *counts.entry(k).or_default() += v;
        }
    }
    assert_eq!(counts.len(), 10_000);
    assert!(counts.values().all(|&v| v == 1.0), "a count is wrong");
    let st = &server.running().stats;
    let stalled_stats = st
        .sinks()
        .into_iter()
        .find(|s| s.name == "stalled")
        .unwrap();
    // The stalled sink really stalled: it holds data it could not write, or
    // dropped (and counted) what its 1 MiB buffer could not hold.
    let backlog = statsyard::stats::get(&stalled_stats.buffered_bytes)
        + statsyard::stats::get(&stalled_stats.dropped);
    assert!(backlog > 0, "the stalled destination never stalled");
    // It kept its queue moving (into its bounded buffer, then counted
    // drops), rather than holding up the flusher.
    assert_eq!(
        statsyard::stats::get(&stalled_stats.queue_dropped),
        0,
        "the stalled sink's queue filled up"
    );
    drop(tcp);
    server.stop();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(held.join().unwrap() >= 1);
}
