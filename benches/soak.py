#!/usr/bin/env python3
"""Soak test: mixed statsd load for a bounded time while the Graphite
destination goes down and comes back and the config is reloaded with SIGHUP.

    cargo build --release --bins
    python3 benches/soak.py --statsyard target/release/statsyard --minutes 10

It starts statsyard with a Graphite sink pointing at a receiver inside this
script, sends a mix of counters, timers (some sampled), gauges, sets and
histograms, with DogStatsD tags on a third of the lines, and meanwhile:

- stops the destination (`--down` seconds every `--cycle` seconds): it stops
  accepting, reads what its open connections still send until they are quiet,
  then closes them, as a carbon-cache being restarted does;
- sends SIGHUP every `--reload-every` seconds, alternating the percentiles in
  the config file, so every reload really changes something.

At the end it stops sending, waits for the last flushes, sends SIGTERM, and
prints what was sent, accepted (the server's own count), delivered and lost,
and the server's RSS over time. Counters (value 1, never sampled) and timer
samples are counted exactly at the receiver. Every line received counts: a
flush written again after a reconnect (delivery is at-least-once) would show
as a negative loss. (Points
are not merged by (name, timestamp) as a carbon-cache would: the final flush
at SIGTERM may carry the same rounded second as the flush before it.)

Exit status 0 when nothing countable was lost, 1 otherwise.
"""

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


class Destination:
    """A Graphite plaintext receiver that can be taken down and brought back."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.points = []  # (name, ts, value), every line received
        self.lines = 0
        self.listener = None
        self.conns = []
        self.stopping = False

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.listener = s
        self.stopping = False
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        buf = b""
        c.settimeout(0.3)
        while True:
            try:
                data = c.recv(1 << 16)
            except socket.timeout:
                if self.stopping:
                    break  # quiet while stopping: close it
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            with self.lock:
                for line in lines:
                    parts = line.rsplit(b" ", 2)
                    if len(parts) != 3:
                        continue
                    self.lines += 1
                    self.points.append((parts[0], parts[2], parts[1]))
        try:
            c.close()
        except OSError:
            pass

    def stop(self):
        """Stop accepting; open connections close once they go quiet."""
        self.stopping = True
        if self.listener:
            self.listener.close()
            self.listener = None

    def totals(self, pattern):
        rx = re.compile(pattern)
        with self.lock:
            return sum(float(v) for n, _, v in self.points if rx.match(n))


def config(udp_port, http_port, dest_port, percentiles, spool_dir):
    spool = f'spool_dir = "{spool_dir}"\n' if spool_dir else ""
    return f"""
[statsd]
udp = ["127.0.0.1:{udp_port}"]
tcp = []
[http]
address = "127.0.0.1:{http_port}"
[admin]
enabled = false
[flush]
interval = "1s"
percentiles = {percentiles}
shutdown_timeout = "20s"
[log]
level = "warn"
[[sink]]
type = "graphite"
address = "127.0.0.1:{dest_port}"
backoff_min = "100ms"
backoff_max = "1s"
{spool}"""


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--statsyard", default="target/release/statsyard")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=20000, help="lines per second")
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--cycle", type=float, default=60.0, help="seconds between outages")
    ap.add_argument("--down", type=float, default=15.0, help="seconds each outage lasts")
    ap.add_argument("--reload-every", type=float, default=45.0)
    ap.add_argument("--rss-every", type=float, default=30.0)
    ap.add_argument("--spool", action="store_true", help="give the sink a disk spool")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="statsyard-soak-")
    udp_port = free_port(socket.SOCK_DGRAM)
    http_port = free_port(socket.SOCK_STREAM)
    dest_port = free_port(socket.SOCK_STREAM)
    spool_dir = os.path.join(work, "spool") if args.spool else None
    conf = os.path.join(work, "statsyard.toml")
    percentile_sets = ["[90]", "[90, 99]"]
    with open(conf, "w") as f:
        f.write(config(udp_port, http_port, dest_port, percentile_sets[0], spool_dir))

    dest = Destination(dest_port)
    dest.start()
    log = open(os.path.join(work, "statsyard.log"), "w")
    server = subprocess.Popen([args.statsyard, "--config", conf], stdout=subprocess.DEVNULL, stderr=log)
    time.sleep(1.0)
    if server.poll() is not None:
        sys.exit(f"statsyard exited at start; see {log.name}")

    rng = random.Random(1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = {"c": 0, "ms": 0, "ms_count": 0.0, "g": 0, "s": 0, "h": 0, "h_count": 0.0}
    tags = [b"|#env:prod,host:h%d" % i for i in range(4)]

    def line(i):
        k = rng.randrange(args.keys)
        kind = rng.random()
        tag = tags[k % 4] if k % 3 == 0 else b""
        if kind < 0.4:
            sent["c"] += 1
            return b"soak.c.k%d:1|c%s" % (k, tag)
        if kind < 0.7:
            sent["ms"] += 1
            if i % 4 == 0:
                sent["ms_count"] += 2.0
                return b"soak.ms.k%d:%d|ms|@0.5%s" % (k, rng.randrange(1000), tag)
            sent["ms_count"] += 1.0
            return b"soak.ms.k%d:%d|ms%s" % (k, rng.randrange(1000), tag)
        if kind < 0.8:
            sent["g"] += 1
            return b"soak.g.k%d:%d|g%s" % (k, rng.randrange(100), tag)
        if kind < 0.9:
            sent["s"] += 1
            return b"soak.s.k%d:m%d|s%s" % (k, rng.randrange(8), tag)
        sent["h"] += 1
        sent["h_count"] += 1.0
        return b"soak.h.k%d:%d|h%s" % (k, rng.randrange(500), tag)

    start = time.time()
    end = start + args.minutes * 60
    next_outage = start + args.cycle
    back_at = None
    next_reload = start + args.reload_every
    next_rss = start
    rss = []
    events = []
    reloads = 0
    i = 0
    per_packet = 20
    while time.time() < end:
        tick = time.time()
        # One 10 ms slice of traffic.
        for _ in range(max(1, args.rate // 100 // per_packet)):
            sock.sendto(b"\n".join(line(i + j) for j in range(per_packet)), ("127.0.0.1", udp_port))
            i += per_packet
        now = time.time()
        if back_at is None and now >= next_outage:
            dest.stop()
            back_at = now + args.down
            events.append(f"{now - start:7.1f}s destination down")
        elif back_at is not None and now >= back_at:
            dest.start()
            events.append(f"{now - start:7.1f}s destination up")
            back_at = None
            next_outage = now + args.cycle - args.down
        if now >= next_reload:
            reloads += 1
            with open(conf, "w") as f:
                f.write(config(udp_port, http_port, dest_port, percentile_sets[reloads % 2], spool_dir))
            server.send_signal(signal.SIGHUP)
            next_reload = now + args.reload_every
        if now >= next_rss:
            rss.append((now - start, rss_kib(server.pid)))
            next_rss = now + args.rss_every
        time.sleep(max(0.0, 0.01 - (time.time() - tick)))
    if back_at is not None:
        dest.start()
        events.append(f"{time.time() - start:7.1f}s destination up")
    sending = time.time() - start
    rss.append((sending, rss_kib(server.pid)))

    stats = None
    try:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/stats", timeout=5) as r:
            stats = json.load(r)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"(cannot read /api/stats: {e})")
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=60)  # noqa: the final flush and delivery
    except subprocess.TimeoutExpired:
        server.kill()
        code = "killed after 60 s"
    time.sleep(2.0)  # the last connection's lines

    accepted = dest.totals(rb"^stats_counts\.statsd\.metrics_received$")
    c_in = dest.totals(rb"^stats_counts\.soak\.c\.")
    ms_in = dest.totals(rb"^stats\.timers\.soak\.ms\.k\d+\.count(;.*)?$")
    h_in = dest.totals(rb"^stats\.timers\.soak\.h\.k\d+\.count(;.*)?$")
    total = sum(sent[k] for k in ("c", "ms", "g", "s", "h"))
    kernel = sum(u["kernel_drops"] for u in stats.get("udp_sockets", [])) if stats else "?"
    print(f"soak: {args.minutes:g} min, {args.rate} lines/s offered, {args.keys} keys per type, "
          f"outage {args.down:g}s every {args.cycle:g}s, SIGHUP every {args.reload_every:g}s "
          f"({reloads} reloads), spool {'on' if args.spool else 'off'}")
    print(f"sent      {total:>12,} lines in {sending:.0f} s ({total / sending:,.0f}/s)")
    print(f"accepted  {accepted:>12,.0f} lines (the server's metrics_received, as delivered)")
    print(f"kernel    {kernel:>12} datagrams dropped before statsyard read them")
    rows = [("counters", sent["c"], c_in), ("timer samples", sent["ms_count"], ms_in),
            ("histogram samples", sent["h_count"], h_in)]
    lost_any = False
    for name, s, d in rows:
        lost = s - d
        lost_any |= lost != 0
        print(f"{name:<18} sent {s:>12,.0f}  delivered {d:>12,.0f}  lost {lost:>8,.0f} "
              f"({100 * lost / max(s, 1):.3f}%)")
    print(f"graphite lines received {dest.lines:,}; "
          f"exit after SIGTERM: {code}")
    if stats:
        sinks = stats.get("sinks", [])
        for s in sinks:
            print("sink " + ", ".join(f"{k}={v}" for k, v in s.items()))
        print(f"reloads={stats.get('reloads')} reload_failures={stats.get('reload_failures')} "
              f"task_restarts={stats.get('task_restarts', 'n/a')}")
    print("events:")
    for e in events:
        print("  " + e)
    print("rss over time:")
    for t, kib in rss:
        print(f"  {t:7.1f}s {kib / 1024:8.1f} MiB")
    print(f"work dir {work}")
    sys.exit(1 if lost_any or accepted < total - (kernel if isinstance(kernel, int) else 0) else 0)


if __name__ == "__main__":
    main()
