#!/usr/bin/env python3
"""Carbon relay throughput: `statsyard relay` against carbon-c-relay.

Both relays get the same plaintext input over TCP and forward it with
carbon_ch to one counting sink (a TCP server in this script that counts
lines). For each relay the script reports lines/s (from the first byte sent
to the last line counted at the sink) and the relay's CPU per line
(utime+stime from /proc/<pid>/stat over the run).

Usage:
  python3 benches/relay_compare.py --statsyard target/release/statsyard \
      [--lines 2000000] [--names 100000] [--runs 3] [--relay-cpu 1] [--send-cpu 0]
      [--window 50000] [--statsyard-config FILE] [--only statsyard]

carbon-c-relay comes from PATH (Debian package carbon-c-relay). Both relays
run with their defaults otherwise (carbon-c-relay: as many workers as CPUs).
`--statsyard-config FILE` passes `--config FILE` to statsyard (for relay
keys such as `on_full = "drop"`; the destinations on the command line replace
the file's clusters). `--only statsyard` skips carbon-c-relay.
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sink:
    """Counts lines over any number of TCP connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lines = 0
        self.last = None
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn):
        while True:
            data = conn.recv(1 << 20)
            if not data:
                return
            n = data.count(b"\n")
            with self.lock:
                self.lines += n
                self.last = time.monotonic()

    def reset(self):
        with self.lock:
            self.lines = 0
            self.last = None


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] here is field 3.
    return int(fields[11]) + int(fields[12])


def wait_listening(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("relay did not listen on %d" % port)


def payload(lines, names, chunk=10_000):
    """The input as (bytes, line count) chunks of `chunk` lines."""
    rng = random.Random(42)
    keys = ["bench.host%03d.svc%02d.metric%06d" % (rng.randrange(500), rng.randrange(50), i)
            for i in range(names)]
    ts = int(time.time())
    out = []
    for start in range(0, lines, chunk):
        end = min(lines, start + chunk)
        out.append(("".join("%s %d %d\n" % (keys[i % names], i % 1000, ts)
                            for i in range(start, end)).encode(), end - start))
    return out


def run(name, argv, port, data, lines, sink, relay_cpu, send_cpu, window):
    sink.reset()
    pre = ["taskset", "-c", str(relay_cpu)] if relay_cpu is not None else []
    proc = subprocess.Popen(pre + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        time.sleep(0.5)  # let it connect to the sink
        sink.reset()
        if send_cpu is not None:
            os.sched_setaffinity(0, {send_cpu})
        cpu0 = cpu_ticks(proc.pid)
        start = time.monotonic()
        s = socket.create_connection(("127.0.0.1", port))
        if window:
            # Closed loop: at most `window` lines between sender and sink,
            # so a relay that drops on a full queue is measured at the rate
            # it sustains rather than at the rate it can shed.
            sent_lines = 0
            for chunk, n in data:
                while sent_lines - sink.lines > window - n:
                    time.sleep(0.0005)
                s.sendall(chunk)
                sent_lines += n
        else:
            for chunk, _ in data:
                s.sendall(chunk)
        s.close()
        sent = time.monotonic()
        deadline = sent + 120
        while sink.lines < lines and time.monotonic() < deadline:
            time.sleep(0.01)
        # Settle: nothing more arriving for 0.5 s.
        while time.monotonic() - (sink.last or sent) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        end = sink.last or time.monotonic()
        cpu = (cpu_ticks(proc.pid) - cpu0) / CLK_TCK
        got = sink.lines
        rate = got / (end - start) if end > start else 0
        print("%s: window=%d lines=%d forwarded=%d elapsed=%.2fs lines_per_s=%s cpu=%.2fs cpu_ns_per_line=%d"
              % (name, window, lines, got, end - start, format(int(rate), ","), cpu,
                 cpu * 1e9 / got if got else 0), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--statsyard", required=True)
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--relay-cpu", type=int)
    ap.add_argument("--send-cpu", type=int)
    ap.add_argument("--window", type=int, default=0,
                    help="max lines in flight (0: send everything at once)")
    ap.add_argument("--statsyard-config",
                    help="a statsyard.toml whose [relay] keys apply (e.g. on_full)")
    ap.add_argument("--only", choices=["statsyard", "carbon-c-relay"],
                    help="run one relay only")
    ap.add_argument("--crelay-args", default="",
                    help="extra carbon-c-relay flags, e.g. '-b 10000 -q 200000'")
    a = ap.parse_args()

    sink = Sink()
    data = payload(a.lines, a.names)
    dest = "127.0.0.1:%d" % sink.port
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.runs):
            if a.only != "carbon-c-relay":
                port = free_port()
                conf = ["--config", a.statsyard_config] if a.statsyard_config else []
                run("statsyard", [a.statsyard] + conf + [
                    "relay", "--listen", "127.0.0.1:%d" % port,
                    "--pickle-listen", "127.0.0.1:%d" % free_port(),
                    "--method", "carbon_ch", dest],
                    port, data, a.lines, sink, a.relay_cpu, a.send_cpu, a.window)
            if a.only == "statsyard":
                continue
            port = free_port()
            conf = os.path.join(tmp, "c.conf")
            with open(conf, "w") as f:
                f.write("listen type linemode 127.0.0.1:%d proto tcp;\n"
                        "cluster c carbon_ch %s;\n"
                        "match * send to c;\n" % (port, dest))
            run("carbon-c-relay", ["carbon-c-relay", "-f", conf, "-p", str(port)] + a.crelay_args.split(),
                port, data, a.lines, sink, a.relay_cpu, a.send_cpu, a.window)


if __name__ == "__main__":
    sys.exit(main())
