#!/usr/bin/env python3
"""Write the seed inputs of every target into corpus/<target>/, named by
their SHA-1 as libFuzzer names corpus files. Run from fuzz/ before a first
`cargo fuzz run`; `cargo fuzz cmin` then keeps only the useful ones.

Seeds come from the repository's own test data (tests/data, deploy/examples,
the embedded default config) plus a few hand-written carbon lines and pickle
frames made with Python's pickle module, protocols 0 to 5, and the inputs
that once crashed a target (regress-*).

    python3 seed.py                 # seeds and regressions
    python3 seed.py --regressions   # only the regressions (after cmin)"""

import hashlib
import os
import pickle
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def put(target, data, name=None):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name or hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def unescape(line):
    """tests/data/differential's escapes: \\n \\r \\t \\\\ \\xNN \\u{HEX}."""
    out = bytearray()
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            if n in "nrt\\":
                out += {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}[n]
                i += 2
                continue
            if n == "x":
                out.append(int(line[i + 2 : i + 4], 16))
                i += 4
                continue
            m = re.match(r"u\{([0-9a-fA-F]+)\}", line[i + 1 :])
            if m:
                out += chr(int(m.group(1), 16)).encode()
                i += 1 + m.end()
                continue
        out += c.encode()
        i += 1
    return bytes(out)


def statsd():
    datagrams = []
    for line in read("tests/data/differential/common.txt").decode().splitlines():
        if line.strip() and not line.startswith("#"):
            datagrams.append(unescape(line))
    for line in read("tests/data/prometheus/corpus.statsd").decode().splitlines():
        if line.strip() and not line.startswith("#"):
            datagrams.append(line.encode())
    for d in datagrams:
        put("statsd_packet", d)
        put("statsd_roundtrip", d)


EVENTS = [
    b"_e{5,4}:title|text",
    b"_e{9,12}:disk full|sda1\\nat 99%|d:1700000000|h:web1|k:disk|p:low|s:nagios|t:error|#env:prod,team:ops|#role",
    b"_e{3,5}:a|b|c|d|e",
    b"_e{1,0}:x|",
    b"_e{1,1}:x|y|c:abc|card:low|e:it-false|zz",
    b"_e{1,1}:x|y|d:-5|p:normal|t:warning",
    b"_e{5,9}:title|text",
    b"_e{0,4}:|text",
    b"_e{18446744073709551615,1}:x|y",
    "_e{7,2}:caf\u00e9 \u2603|\u00e9".encode(),
]

CHECKS = [
    b"_sc|app.up|0",
    b"_sc|db.up|2|d:1700000000|h:db1|#env:prod,role:primary|m:replica lag 30s",
    b"_sc|x|1|m:a|b",
    b"_sc|x|3|#host:h1|h:h2",
    b"_sc|name|4",
    b"_sc||0",
    b"_sc|!!!|0",
    b"_sc|a b;c|1|#t;1:v,u",
]


def dogstatsd():
    for e in EVENTS:
        put("dogstatsd_event", e)
    for c in CHECKS:
        put("dogstatsd_check", c)


CARBON = [
    b"foo.bar 1 1700000000",
    b"foo.bar 1.5e3 1700000000.5\r",
    b"  foo\tbar  -1 -1  ",
    b"a.b;env=prod;host=x 3 1700000000",
    b"a.b;~name=z;b=1;a=2 4 1700000000",
    b"a 1_000 1_700_000_000",
    b"a inf 1700000000\na -Infinity 1700000000\na nan 1",
    b"a 1",
    b"a .5 -1.9",
    b"a 1 2 3",
    b"a/b..c 1 1700000000",
    "é\u00a0 1 1700000000".encode(),
]


def carbon():
    for c in CARBON:
        put("carbon_line", c)


def pickles():
    points = [
        ("foo.bar", (1700000000, 1.5)),
        ("a.b;env=prod", (1700000000.5, 3)),
        ("x", [-1, "2.5"]),
        (b"bytes.name", (1700000000, True)),
        ("big", (1700000000, 10**30)),
        ("bad", (1700000000,)),
        ("nan", (1700000000, float("nan"))),
    ]
    for proto in range(0, 6):
        for payload in (points, tuple(points[:2]), [], [points[0]] * 3, {"a": 1}):
            data = pickle.dumps(payload, protocol=proto)
            put("pickle_frame", struct.pack(">I", len(data)) + data)
    # A set, a frozenset and a dict holding points: never valid, always skipped.
    for proto in (2, 4):
        data = pickle.dumps([("s", {1, 2}), ("f", frozenset([1.5])), ("d", {1.5: 2})], protocol=proto)
        put("pickle_frame", struct.pack(">I", len(data)) + data)
    put("pickle_frame", b"\x00\x00\x00\x05(l.")


def configs():
    put("config_js", read("deploy/examples/statsd-config.js"))
    put("config_js", b"{ port: 8125, flushInterval: 1000, backends: ['./backends/graphite'],\n"
        b"  graphite: { legacyNamespace: false }, percentThreshold: [90, 99.9],\n"
        b"  histogram: [{ metric: 'foo', bins: [10, 'inf'] }] }")
    put("config_js", b"({ servers: [{ server: './servers/tcp', port: 8126 }], })\n;")
    # The JavaScript forms config.js files compute values with.
    put("config_js", b"{ graphiteHost: process.env.GRAPHITE_HOST || 'localhost',\n"
        b"  port: parseInt(process.env.PORT, 10) || 8125, mgmt_port: Number(process.env['MGMT']),\n"
        b"  graphite: { globalSuffix: require('os').hostname() },\n"
        b"  prefixStats: 'statsd.' + (process.env.ENV || 'dev') + '.' + require(\"os\").hostname() }")
    put("config_js", b"{ a: process.env.HOME + 1 + 'x', b: [process.env.X, parseInt('0x1f')], c: (('a')) }")
    put("config_js", b"{ a: require('os').hostname().split('.')[0], b: 8125 + 1, c: parseInt('1', 99) }")
    for name in sorted(os.listdir(os.path.join(ROOT, "deploy/examples"))):
        if name.endswith(".toml"):
            put("config_toml", read("deploy/examples/" + name))
    put("config_toml", read("src/config/default.toml"))
    put("mapping_yaml", read("deploy/examples/mapping.yml"))
    put("mapping_yaml", read("tests/data/prometheus/mapping.yml"))


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def regressions():
    """Inputs that crashed a target once, named regress-*: `cargo fuzz cmin`
    keeps only inputs that add coverage, so run `seed.py --regressions`
    after it to put these back."""
    deep = b"\x80\x02" + b"]" * 20000 + b"a" * 19999 + b"."
    put("pickle_frame", frame(deep), "regress-pickle-deep-lists")
    marks = b"(" * 3000 + b"t" * 3000 + b"."
    put("pickle_frame", frame(marks), "regress-pickle-deep-marks")
    wide = b"\x80\x02]q\x00(" + b"K\x01" * 200 + b"e]" + b"h\x00a" * 5000 + b"."
    put("pickle_frame", frame(wide), "regress-pickle-memo-expansion")
    dup = b"\x80\x02](" + b"K\x01" * 200 + b"e" + b"2" * 5000 + b"."
    put("pickle_frame", frame(dup), "regress-pickle-dup-expansion")
    put("pickle_frame", b"(" * 20000 + b".", "regress-pickle-mark-flood")
    put("pickle_frame", b"](ta" * 5000 + b".", "regress-pickle-mark-tuples")
    nan_set = pickle.dumps([("s", (1, {float("nan"), 1.0}))], protocol=4)
    put("pickle_frame", frame(nan_set), "regress-pickle-nan-set")
    nan_key = pickle.dumps([("k", (1, {(1, float("nan")): 2}))], protocol=2)
    put("pickle_frame", frame(nan_key), "regress-pickle-nan-dict-key")
    put("pickle_frame", b"\x80\x02]L" + b"7" * 5000 + b"L\na.", "regress-pickle-long-decimal")
    put("config_js", b"{x: " + b"[" * 20000, "regress-config-js-deep-arrays")
    put("config_js", b"{x: " + b"{a:" * 10000, "regress-config-js-deep-objects")
    put("config_js", b"{x: 1} // \xe2\x80\xa8" + b"[" * 20000, "regress-config-js-ls-comment")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regressions"]:
        statsd()
        dogstatsd()
        carbon()
        pickles()
        configs()
    regressions()
    sys.exit(0)
