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


# The forwarding protocol (src/forward/proto.rs, docs/forward.proto),
# written by hand: protobuf's wire format and snappy's block format.

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def pb_uint(num, n):
    return field(num, 0, varint(n)) if n else b""


def pb_double(num, v):
    return field(num, 1, struct.pack("<d", v)) if v != 0.0 else b""


def pb_bytes(num, b):
    return field(num, 2, varint(len(b)) + b)


def pb_doubles(num, vs):
    """A packed repeated double, as prost writes it."""
    return pb_bytes(num, b"".join(struct.pack("<d", v) for v in vs)) if vs else b""


KIND = {"counter": 0, "gauge": 1, "timer": 2, "histogram": 3, "distribution": 4, "set": 5}


def hdr_v2(counts, high=2048):
    """An HdrHistogram V2 encoding at statsyard's precision (3 digits) of
    {microseconds: count}, values under 2048 (where the bucket index is the
    value): counts as zigzag varints, a run of zeros as its negated length."""
    zz = lambda n: varint((n << 1) ^ (n >> 63))
    payload = bytearray()
    at = 0
    for i in sorted(counts):
        if i > at:
            payload += zz(-(i - at))
        payload += zz(counts[i])
        at = i + 1
    return struct.pack(">IIIIqqd", 0x1C849313, len(payload), 0, 3, 1, high, 1.0) + payload


def hdr_msg(samples):
    """The Hdr message of the samples (ms), each under 2.048 in magnitude."""
    pos, neg = {}, {}
    for v in samples:
        d = pos if v >= 0 else neg
        us = round(abs(v) * 1000)
        d[us] = d.get(us, 0) + 1
    n = len(samples)
    mean = sum(samples) / n
    m2 = sum((v - mean) ** 2 for v in samples)
    return (
        pb_bytes(1, hdr_v2(pos))
        + (pb_bytes(2, hdr_v2(neg)) if neg else b"")
        + pb_uint(3, n)
        + pb_double(4, sum(samples))
        + pb_double(5, sum(v * v for v in samples))
        + pb_double(6, min(samples))
        + pb_double(7, max(samples))
        + pb_double(8, mean)
        + pb_double(9, m2)
    )


def series(key, kind, counter=0.0, gauge=None, members=(), timer=None, raw_kind=None):
    out = pb_bytes(1, key) + pb_uint(2, KIND[kind] if raw_kind is None else raw_kind)
    out += pb_double(3, counter)
    if gauge is not None:
        absolute, written, delta = gauge
        g = (pb_uint(1, 1) + pb_double(2, absolute) + pb_uint(3, written)) if absolute is not None else b""
        out += pb_bytes(4, g + pb_double(4, delta))
    for m in members:
        out += pb_bytes(5, m)
    if timer is not None:
        count, exact, hdr = timer
        t = pb_double(1, count) + pb_doubles(2, exact)
        if hdr is not None:
            t += pb_bytes(3, hdr)
        out += pb_bytes(6, t)
    return out


def batch(entries, version=1, agent=b"host-a/00ff", start=1700000000000, interval=10000,
          part=0, last=True, flushed=1700000010001):
    out = pb_uint(1, version) + (pb_bytes(2, agent) if agent else b"")
    out += pb_uint(3, start) + pb_uint(4, interval) + pb_uint(5, part)
    out += pb_uint(6, 1 if last else 0) + pb_uint(7, flushed)
    for e in entries:
        out += pb_bytes(8, e)
    return out


def snappy(data):
    """Snappy's block format: the length, then literals and 2-byte-offset
    copies (a greedy search for repeats of 4 bytes or more)."""
    out = bytearray(varint(len(data)))
    lit_start = i = 0

    def literal(b):
        n = len(b) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out.extend((60 << 2, n))
        else:
            out.append(61 << 2)
            out.extend(struct.pack("<H", n))
        out.extend(b)

    while i < len(data):
        best_len, best_off = 0, 0
        for j in range(max(0, i - 2048), i):
            k = 0
            while i + k < len(data) and data[j + k] == data[i + k] and k < 64:
                k += 1
            if k > best_len:
                best_len, best_off = k, i - j
        if best_len >= 4:
            if lit_start < i:
                literal(data[lit_start:i])
            out.append((best_len - 1) << 2 | 2)
            out.extend(struct.pack("<H", best_off))
            i += best_len
            lit_start = i
        else:
            i += 1
    if lit_start < len(data):
        literal(data[lit_start:])
    return bytes(out)


def forward():
    """Messages of every series type, one by one and together, the empty
    last part, and the ways a message is refused; each raw and snappy."""
    counter = series(b"c;env=prod", "counter", counter=10.0)
    gauge = series(b"g", "gauge", gauge=(4.5, 1700000005000, 0.0))
    delta = series(b"gd", "gauge", gauge=(None, 0, -2.0))
    timer = series(b"t", "timer", timer=(4.0, [1.0, 2.0, 3.0], None))
    hist = series(b"h;a=b", "histogram", timer=(4.0, [], hdr_msg([0.5, 1.0, 1.5, 2.0])))
    dist = series(b"d", "distribution", timer=(2.5, [], hdr_msg([-1.0, 0.5])))
    dist_exact = series(b"d", "distribution", timer=(1.0, [-0.25, 7.0], None))
    members = series(b"s", "set", members=[b"a", b"b", b"c"])
    more = series(b"s", "set", members=[b"c", b"user-1", b"\xff\x00"])
    every = [counter, gauge, delta, timer, hist, dist, members]
    valid = [batch([e]) for e in every] + [
        batch(every),
        # Entries of one key merge: samples pool past the exact bound,
        # a histogram and exact samples, set members union.
        batch([timer, timer, dist, dist_exact, members, more, counter, counter]),
        batch([], last=True),
        batch([counter], part=3, last=False),
        # Late: an interval flushed already.
        batch([counter, timer], start=1699999980000),
        batch([gauge], agent=b"h" * 256, interval=60000, start=1699999960000),
    ]
    refused = [
        batch([counter], version=2),
        batch([counter], version=0),
        batch([counter], interval=0),
        batch([counter], agent=b""),
        batch([counter], agent=b"h" * 257),
        batch([series(b"a b", "counter", counter=1.0)]),
        batch([series(b"a\nb", "counter", counter=1.0)]),
        batch([series(b"", "counter", counter=1.0)]),
        batch([series(b"k", "counter", raw_kind=99)]),
        batch([series(b"k", "counter", raw_kind=-1)]),
        batch([series(b"k", "timer")]),
        batch([counter, series(b"k", "histogram", timer=(1.0, [], pb_bytes(1, b"\x01\x02\x03") + pb_uint(3, 1)))]),
        # A histogram of another precision, and one whose counts are not n.
        batch([series(b"k", "timer", timer=(1.0, [], pb_bytes(1, hdr_v2({1000: 1})[:12] + struct.pack(">I", 5) + hdr_v2({1000: 1})[16:]) + pb_uint(3, 1)))]),
        batch([series(b"k", "timer", timer=(1.0, [], pb_bytes(1, hdr_v2({1000: 1})) + pb_uint(3, 2)))]),
        batch([series(b"k", "timer", timer=(float("nan"), [float("nan"), float("inf")], None))]),
        batch([series(b"k", "counter", counter=1.0)], start=2**63),
    ]
    for m in valid + refused:
        put("forward_message", m)
        put("forward_message", snappy(m))
    whole = batch(every)
    put("forward_message", whole[: len(whole) // 2])
    put("forward_message", snappy(whole)[: len(snappy(whole)) // 2])
    # Not protobuf; a snappy body claiming 2 GiB.
    put("forward_message", b"\x0a\xff")
    put("forward_message", b"\xff\xff\xff\x7f\x00")


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
    # Two set members that are one (invalid UTF-8 is U+FFFD, as in the
    # reference): the target once counted them as two.
    members = batch([series(b"s", "set", members=[b"\xf2", b"\x93", b"ok"])])
    put("forward_message", members, "regress-forward-set-invalid-utf8")
    put("forward_message", snappy(members), "regress-forward-set-invalid-utf8-snappy")
    # A histogram header claiming a 4 GiB payload in a 101-byte message:
    # the decoder allocated it before reading.
    hdr_claim = bytes.fromhex(
        "0801120b686f73742d612f303066661880d095ffbc3120904e300138919e96ffbc31"
        "42410a016b1002323a09000000000000f03f1a2f0a2b1c849313ffffffff00000000"
        "00000003000000000000000100000000000008003ff0000000000000cf0f021801")
    put("forward_message", hdr_claim, "regress-forward-hdr-payload-claim")
    # interval_ms 2^62: the aggregator's dedup expiry overflowed.
    huge_iv = bytes.fromhex(
        "0801120b686f73742d612f303066661880d095ffbc3120808080808080808040300138"
        "919e96ffbc31420c0a016319000000000000f03f")
    put("forward_message", huge_iv, "regress-forward-interval-overflow")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regressions"]:
        statsd()
        dogstatsd()
        forward()
        carbon()
        pickles()
        configs()
    regressions()
    sys.exit(0)
