#!/usr/bin/env python3
"""Run the same UDP workloads against statsyard, the reference statsd and
other statsd servers (`--peer brubeck PATH`), one server at a time, and print
one table.

Each run starts the server pinned to one CPU (taskset) with a generated config
(UDP on a free port, Graphite plaintext to the load generator, a 2 s flush,
warnings only), then runs statsyard-loadgen pinned to another CPU. The load
generator receives the server's Graphite output and reports the server's own
count of lines processed (`stats_counts.statsd.metrics_received`), the server's
CPU time per processed line and its peak RSS.

    cargo build --release --bins
    benches/compare.py                       # every server, every workload
    benches/compare.py --servers statsyard --workloads W1,W2 --repeats 3
    # statsyard against GitHub's brubeck (counters only), 1 s flush, runs
    # alternating, each started only on a quiet machine:
    benches/compare.py --servers statsyard --peer brubeck target/peers/brubeck \
        --workloads W1,W2 --flush-ms 1000 --repeats 5 --quiet --budget 900

Workloads (see WORKLOADS below):
    W1     counters of value 1, 20 lines/packet, 1,000 keys, max rate, 3 s
    W2     counters of value 1, 60 lines/packet, 100,000 keys, max rate, 3 s
    MIXED  counters, sampled timers, gauges, sets, histograms; tags on a third
           of the lines; 2,000,000 lines/s offered for 3 s. A server that dies
           or reports nothing is run again at --fallback-rate.

Binaries come from $CARGO_TARGET_DIR/release (else target/release); the
reference from target/reference-statsd/node_modules/statsd/stats.js (run with
`node`); a peer from the path given. A missing server is skipped with a
note. The whole script stays under --budget seconds (default 170) of running
(time spent waiting for a quiet machine not counted): runs that would start
later are skipped.

Runs alternate between the servers (all servers' run 1, then all servers'
run 2, ...), and with several repeats a table of medians follows the raw
rows. --quiet makes each run wait until no `rustc` or `cargo` process is
running and the 1-minute load average is below --max-load, and runs again
(up to --quiet-retries times) a run during which such a process appeared.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEND_SECONDS = 3
# The most a run waits after sending for the server to report its backlog. A
# run ends sooner, at the first flush that reports nothing processed; only a
# backlogged server (the reference, whose flush timer is late while it reads)
# needs more than the default 2.5 flush intervals.
SETTLE_SECONDS = 10

# name -> the load generator's arguments for it
WORKLOADS = {
    "W1": ["--mix", "c=1", "--lines-per-packet", "20", "--keys", "1000"],
    "W2": ["--mix", "c=1", "--lines-per-packet", "60", "--keys", "100000"],
    # W2 at the rate the peers were measured at (the loss target's rate).
    "W2P": ["--mix", "c=1", "--lines-per-packet", "60", "--keys", "100000",
            "--rate", "5900000"],
    "MIXED": [
        "--mix", "c=4,ms=3,g=1,s=1,h=1", "--tags", "0.3333",
        "--lines-per-packet", "20", "--keys", "10000", "--rate", "2000000",
    ],
}
# Workloads that are run again at a lower rate when the server falls over.
FALLBACK = {"MIXED"}
# Workloads of counters only. brubeck ignores sample rates and has no sets,
# so it is compared on these alone.
COUNTERS_ONLY = {"W1", "W2", "W2P"}


def free_port(kind):
    """A port the kernel just gave out and took back: free unless raced."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    return os.path.join(target, "release")


def statsyard_command(path, tmp, udp_port, graphite_port, flush_ms):
    cfg = os.path.join(tmp, "statsyard.toml")
    # statsd in, Graphite out, as the reference runs: the HTTP exporter's and
    # the admin console's costs are measured apart (benchmarks.md, "the
    # Prometheus exporter"), and fixed ports would collide between runs.
    with open(cfg, "w") as f:
        f.write(
            f'[statsd]\nudp = ["127.0.0.1:{udp_port}"]\ntcp = []\n'
            f'[flush]\ninterval = "{flush_ms}ms"\n'
            f'[http]\nenabled = false\n[admin]\nenabled = false\n'
            f'[log]\nlevel = "warn"\n'
            f'[[sink]]\ntype = "graphite"\naddress = "127.0.0.1:{graphite_port}"\n'
        )
    return [path, "--config", cfg]


def reference_command(path, tmp, udp_port, graphite_port, flush_ms):
    cfg = os.path.join(tmp, "config.js")
    # mgmt_port: the admin TCP console, on a free port so runs do not collide.
    with open(cfg, "w") as f:
        f.write(
            f"{{ port: {udp_port}, address: '127.0.0.1',"
            f" mgmt_address: '127.0.0.1', mgmt_port: {free_port(socket.SOCK_STREAM)},"
            f" graphiteHost: '127.0.0.1', graphitePort: {graphite_port},"
            f" flushInterval: {flush_ms}, backends: ['./backends/graphite'] }}\n"
        )
    return ["node", path, cfg]


def brubeck_command(path, tmp, udp_port, graphite_port, flush_ms):
    # The configuration of the published comparison (shared/peers/README.md):
    # one statsd sampler, one worker, no sharding, one carbon backend. Its
    # flush (`frequency`) is in whole seconds.
    cfg = os.path.join(tmp, "brubeck.json")
    with open(cfg, "w") as f:
        json.dump({
            "sharding": False, "server_name": "b", "dumpfile": os.path.join(tmp, "b.dump"),
            "capacity": 20, "expire": 20,
            "backends": [{"type": "carbon", "address": "127.0.0.1", "port": graphite_port,
                          "frequency": max(1, round(flush_ms / 1000))}],
            "samplers": [{"type": "statsd", "address": "127.0.0.1", "port": udp_port,
                          "workers": 1, "multisock": False, "multimsg": 1}],
        }, f)
    return [path, "--config", cfg]


# Peers that `--peer NAME PATH` knows: (command builder, extra loadgen
# arguments, workloads it can run). brubeck counts the lines it read as
# `<server_name>.metrics` and writes a counter under its bare name.
PEERS = {
    "brubeck": (brubeck_command,
                lambda prefix: ["--processed-metric", "b.metrics",
                                "--arrived-prefix", f"{prefix}.c."],
                COUNTERS_ONLY),
}


def servers(args):
    """name -> (command builder, path, loadgen args, workloads or None for
    all), and notes on what is skipped."""
    found, notes = {}, []
    wanted = args.servers.split(",")
    if "statsyard" in wanted:
        path = args.statsyard or os.path.join(bin_dir(), "statsyard")
        if os.access(path, os.X_OK):
            # Absolute: servers run in their own temporary directory.
            found["statsyard"] = (statsyard_command, os.path.abspath(path), [], None)
        else:
            notes.append(f"statsyard skipped: no {path} (cargo build --release --bins)")
    if "reference" in wanted:
        path = args.reference or os.path.join(
            REPO, "target/reference-statsd/node_modules/statsd/stats.js")
        if not os.path.exists(path):
            notes.append(f"reference skipped: no {path}")
        elif not shutil.which("node"):
            notes.append("reference skipped: no `node` on PATH")
        else:
            found["reference"] = (reference_command, os.path.abspath(path), [], None)
    for name in wanted:
        if name not in ("statsyard", "reference", ""):
            notes.append(f"unknown server {name!r} ignored")
    for name, path in args.peer or []:
        if name not in PEERS:
            sys.exit(f"compare: unknown peer {name!r} (have {', '.join(PEERS)})")
        if not os.access(path, os.X_OK):
            notes.append(f"{name} skipped: no {path}")
            continue
        build, extra, workloads = PEERS[name]
        found[name] = (build, os.path.abspath(path), extra(args.prefix), workloads)
    return found, notes


def busy_processes():
    """The pids of running rustc and cargo processes (other people's builds)."""
    out = subprocess.run(["pgrep", "-x", "rustc|cargo"], capture_output=True, text=True)
    return set(out.stdout.split())


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_quiet(args):
    """Wait until no build runs and the load is low; the seconds waited, or
    None if the machine stayed busy for --quiet-timeout."""
    started = time.monotonic()
    while True:
        if not busy_processes() and load1() < args.max_load:
            return time.monotonic() - started
        if time.monotonic() - started > args.quiet_timeout:
            return None
        time.sleep(20)


class BusyWatch:
    """Polls for rustc/cargo during a run: `seen` tells whether one appeared."""

    def __init__(self):
        import threading
        self.seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.5):
            if busy_processes():
                self.seen = True

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.seen


def pin(cpu):
    if cpu is None:
        return []
    return ["taskset", "-c", str(cpu)]


def with_rate(workload_args, extra):
    """The workload's loadgen arguments plus `extra`, whose `--rate` (the
    fallback's) replaces the workload's own: the loadgen takes one."""
    if "--rate" in extra and "--rate" in workload_args:
        i = workload_args.index("--rate")
        workload_args = workload_args[:i] + workload_args[i + 2:]
    return workload_args + extra


def run_one(args, loadgen, server, build, path, workload, extra):
    """One server, one workload: returns the loadgen's JSON report plus notes."""
    tmp = tempfile.mkdtemp(prefix=f"compare-{server}-")
    udp_port = free_port(socket.SOCK_DGRAM)
    graphite_port = free_port(socket.SOCK_STREAM)
    log = open(os.path.join(tmp, "server.log"), "wb")
    proc = subprocess.Popen(
        pin(args.server_cpu) + build(path, tmp, udp_port, graphite_port, args.flush_ms),
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    cmd = pin(args.loadgen_cpu) + [
        loadgen, "--target", f"127.0.0.1:{udp_port}",
        "--graphite-listen", f"127.0.0.1:{graphite_port}",
        "--flush-ms", str(args.flush_ms), "--wait-flush", "--settle", str(SETTLE_SECONDS),
        "--server-pid", str(proc.pid), "--duration", str(SEND_SECONDS),
        "--prefix", args.prefix,
    ] + with_rate(WORKLOADS[workload], extra)
    try:
        # Waiting for a flush (<= 3 flushes + 2 s), sending, settling: at
        # most 29 s.
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        out = None
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    if out is None:
        return None, f"{server}/{workload}: the load generator timed out (logs in {tmp})"
    if args.verbose:
        sys.stderr.write(out.stderr)
    if out.returncode != 0:
        msg = out.stderr.strip().splitlines()[-1:] or ["?"]
        return None, f"{server}/{workload}: loadgen failed: {msg[0]} (server log in {tmp})"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["server_died"] = not alive
    shutil.rmtree(tmp, ignore_errors=True)
    return report, None


def fmt_int(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_rss(kib):
    return "-" if kib is None else f"{kib / 1024:,.1f} MiB"


def median(values):
    v = sorted(values)
    n = len(v)
    return None if n == 0 else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="statsyard,reference",
                    help="comma-separated: statsyard, reference (or empty)")
    ap.add_argument("--peer", nargs=2, action="append", metavar=("NAME", "PATH"),
                    help="another server to compare: " + ", ".join(PEERS) + " (repeatable)")
    ap.add_argument("--build", action="append", metavar="NAME=PATH",
                    help="another statsyard binary, shown as NAME (repeatable; for A/B runs)")
    ap.add_argument("--workloads", default="W1,W2,MIXED",
                    help="comma-separated: " + ", ".join(WORKLOADS))
    ap.add_argument("--repeats", type=int, default=1, help="runs of each pair")
    ap.add_argument("--flush-ms", type=int, default=2000,
                    help="every server's flush interval (the brubeck comparison: 1000)")
    ap.add_argument("--prefix", default="lg", help="the loadgen's metric name prefix")
    ap.add_argument("--statsyard", help="statsyard binary (default: <target>/release/statsyard)")
    ap.add_argument("--reference", help="the reference's stats.js")
    ap.add_argument("--loadgen", help="statsyard-loadgen binary")
    ap.add_argument("--server-cpu", default="1", help="CPU for the server ('' = no pinning)")
    ap.add_argument("--loadgen-cpu", default="0", help="CPU for the load generator")
    ap.add_argument("--fallback-rate", type=int, default=200_000,
                    help="lines/s for a MIXED rerun when the server falls over")
    ap.add_argument("--budget", type=float, default=170,
                    help="seconds of running for the whole script (waits for quiet not counted)")
    ap.add_argument("--quiet", action="store_true",
                    help="start each run only when no rustc/cargo runs and the load is low")
    ap.add_argument("--max-load", type=float, default=0.5,
                    help="with --quiet: the highest 1-minute load average to start a run at")
    ap.add_argument("--quiet-timeout", type=float, default=3 * 3600,
                    help="with --quiet: give up after waiting this many seconds for one run")
    ap.add_argument("--quiet-retries", type=int, default=3,
                    help="with --quiet: runs again after a build appeared during a run")
    ap.add_argument("--json", help="also write every report to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the loadgen's summaries")
    args = ap.parse_args()
    args.server_cpu = args.server_cpu or None
    args.loadgen_cpu = args.loadgen_cpu or None

    notes = []
    if (args.server_cpu or args.loadgen_cpu) and not shutil.which("taskset"):
        notes.append("no taskset: nothing pinned")
        args.server_cpu = args.loadgen_cpu = None
    elif (os.cpu_count() or 1) < 2:
        notes.append("one CPU: nothing pinned")
        args.server_cpu = args.loadgen_cpu = None

    loadgen = args.loadgen or os.path.join(bin_dir(), "statsyard-loadgen")
    if not os.access(loadgen, os.X_OK):
        sys.exit(f"compare: no {loadgen}; run `cargo build --release --bins` first")
    found, skip_notes = servers(args)
    notes += skip_notes
    for spec in args.build or []:
        name, _, path = spec.partition("=")
        if not (name and os.access(path, os.X_OK)):
            sys.exit(f"compare: --build {spec!r}: expected NAME=PATH to an executable")
        found[name] = (statsyard_command, os.path.abspath(path), [], None)
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"compare: unknown workload {w!r} (have {', '.join(WORKLOADS)})")

    started = time.monotonic()
    waited = 0.0
    rows, reports = [], []
    for workload in workloads:
        # Alternate: every server's first run, then every server's second, ...
        for rep in range(args.repeats):
            for server, (build, path, peer_args, only) in found.items():
                if only is not None and workload not in only:
                    if rep == 0:
                        notes.append(f"{server}/{workload} skipped: counters only")
                    continue
                report = note = None
                label = workload
                for attempt in range(args.quiet_retries + 1 if args.quiet else 1):
                    # A run takes 8-15 s, 30 at worst: do not start one
                    # that could end late.
                    if time.monotonic() - started - waited > args.budget - 30:
                        note = f"{server}/{workload} #{rep + 1} skipped: time budget"
                        break
                    watch = None
                    if args.quiet:
                        w = wait_quiet(args)
                        if w is None:
                            sys.exit(f"compare: no quiet moment in {args.quiet_timeout:.0f} s")
                        waited += w
                        watch = BusyWatch()
                    report, note = run_one(args, loadgen, server, build, path, workload,
                                           peer_args)
                    label = workload
                    fell_over = (report is None or report["server_died"]
                                 or report["processed"] is None)
                    in_budget = time.monotonic() - started - waited <= args.budget - 30
                    if workload in FALLBACK and fell_over and in_budget:
                        why = note or ("the server died" if report and report["server_died"]
                                       else "no processed count")
                        notes.append(f"{server}/{workload}: {why}; "
                                     f"rerun at {args.fallback_rate:,} lines/s")
                        report, note = run_one(args, loadgen, server, build, path, workload,
                                               peer_args + ["--rate", str(args.fallback_rate)])
                        label = f"{workload}@{args.fallback_rate // 1000}k"
                    if watch is not None and watch.stop():
                        notes.append(f"{server}/{workload} #{rep + 1}: a build ran during "
                                     f"the run (load {load1():.2f}); discarded, run again")
                        report = None
                        continue
                    break
                if note:
                    notes.append(note)
                if report is None:
                    continue
                if report["server_died"]:
                    notes.append(f"{server}/{label}: the server died during the run")
                report.update(workload=label, server=server, repeat=rep + 1)
                reports.append(report)
                rows.append([
                    label, server, fmt_int(report["offered_rate"]), fmt_int(report["sent"]),
                    fmt_int(report["processed"]),
                    "-" if report["loss_pct"] is None else f"{report['loss_pct']:.2f}",
                    fmt_int(report["cpu_ns_per_line"]), fmt_rss(report["peak_rss_kib"]),
                ])

    header = ["workload", "server", "offered/s", "sent", "processed", "loss %",
              "cpu ns/line", "peak RSS"]
    print_table(header, rows)
    if args.repeats > 1:
        print()
        print_table(["workload", "server", "runs", "median processed", "median loss %",
                     "median cpu ns/line"], median_rows(reports))
    pinned = (f"server on CPU {args.server_cpu}, loadgen on CPU {args.loadgen_cpu}"
              if args.server_cpu is not None else "not pinned")
    print(f"\n{pinned}; flush {args.flush_ms} ms; {SEND_SECONDS} s of sending per run; "
          f"{time.monotonic() - started:.0f} s in all"
          + (f" ({waited:.0f} s of it waiting for a quiet machine)" if args.quiet else ""))
    for n in notes:
        print(f"note: {n}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=1)
    return 0


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(  # noqa: E731
        str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def median_rows(reports):
    """One row per (workload, server): the medians over its runs."""
    groups = {}
    for r in reports:
        groups.setdefault((r["workload"], r["server"]), []).append(r)
    rows = []
    for (workload, server), rs in groups.items():
        pick = lambda k: [r[k] for r in rs if r[k] is not None]  # noqa: E731
        loss = median(pick("loss_pct"))
        rows.append([workload, server, len(rs), fmt_int(median(pick("processed"))),
                     "-" if loss is None else f"{loss:.2f}",
                     fmt_int(median(pick("cpu_ns_per_line")))])
    return rows


if __name__ == "__main__":
    sys.exit(main())
