#!/usr/bin/env python3
"""Blast statsd counters at a server over loopback UDP and report what it processed.

The server is any statsd that can send Graphite plaintext: it is started with a
config this script writes (statsyard TOML or the reference's config.js), flushes
to a Graphite receiver in this script, and what it processed is read from its own
`stats_counts.statsd.metrics_received`. Server CPU is utime+stime from /proc.

    benches/udp_blast.py statsyard target/release/statsyard
    benches/udp_blast.py reference target/reference-statsd/node_modules/statsd/stats.js

Options: --lines N (total), --per-packet K, --keys M. Prints one result line.
This is a quick single-sender baseline, not the full load generator.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Graphite(threading.Thread):
    """Sums stats_counts.statsd.metrics_received over every flush."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0.0
        self.flushes = 0
        self.lock = threading.Lock()

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn):
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                parts = line.split()
                if len(parts) == 3 and parts[0] == b"stats_counts.statsd.metrics_received":
                    with self.lock:
                        self.received += float(parts[1])
                        self.flushes += 1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["statsyard", "reference"])
    ap.add_argument("path")
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--per-packet", type=int, default=20)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--flush-ms", type=int, default=2000)
    ap.add_argument("--server-cpu", help="pin the server to this CPU (taskset -c)")
    args = ap.parse_args()

    g = Graphite()
    g.start()
    port = free_port(socket.SOCK_DGRAM)
    tmp = tempfile.mkdtemp()
    if args.kind == "statsyard":
        cfg = os.path.join(tmp, "s.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[statsd]\nudp = ["127.0.0.1:{port}"]\ntcp = []\n'
                f'[flush]\ninterval = "{args.flush_ms}ms"\n'
                f'[log]\nlevel = "warn"\n'
                f'[[sink]]\ntype = "graphite"\naddress = "127.0.0.1:{g.port}"\n'
            )
        cmd = [args.path, "--config", cfg]
    else:
        cfg = os.path.join(tmp, "c.js")
        with open(cfg, "w") as f:
            f.write(
                f"{{ port: {port}, address: '127.0.0.1', mgmt_port: {free_port(socket.SOCK_STREAM)},"
                f" graphiteHost: '127.0.0.1', graphitePort: {g.port},"
                f" flushInterval: {args.flush_ms}, backends: ['./backends/graphite'] }}"
            )
        cmd = ["node", args.path, cfg]
    if args.server_cpu is not None:
        cmd = ["taskset", "-c", args.server_cpu] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)

    packets = []
    for p in range(args.keys):
        lines = [f"k{(p * args.per_packet + i) % args.keys}:1|c" for i in range(args.per_packet)]
        packets.append("\n".join(lines).encode())
    n_packets = args.lines // args.per_packet
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cpu0 = cpu_seconds(proc.pid)
    t0 = time.monotonic()
    for i in range(n_packets):
        s.sendto(packets[i % len(packets)], ("127.0.0.1", port))
    elapsed = time.monotonic() - t0
    sent = n_packets * args.per_packet
    # Let two flushes pass so every processed line has been reported.
    time.sleep(args.flush_ms * 2.5 / 1000)
    cpu = cpu_seconds(proc.pid) - cpu0
    rss = peak_rss_kib(proc.pid)
    proc.terminate()
    proc.wait(timeout=20)
    with g.lock:
        processed = g.received
    loss = 100.0 * (sent - processed) / sent
    ns_per_line = cpu * 1e9 / processed if processed else float("nan")
    print(
        f"{args.kind}: sent={sent} offered={sent / elapsed:,.0f}/s processed={processed:.0f} "
        f"loss={loss:.2f}% cpu={cpu:.2f}s cpu_ns_per_line={ns_per_line:.0f} peak_rss_kib={rss}"
    )


if __name__ == "__main__":
    sys.exit(main())
