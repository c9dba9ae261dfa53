//! What is sent: the metric mix, the statsd lines, and the pool of datagrams
//! that is built once before sending so that the sender only copies bytes.
//!
//! Names carry their type (`<prefix>.<type>.k<n>`), so every series has one
//! type, and counters can be summed exactly on the Graphite side by the
//! prefix `stats_counts.<prefix>.c.` whatever else the mix holds.
//!
//! Imports nothing of the library.

use std::io::Write as _;
use std::str::FromStr;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// Pools smaller than this are repeated until they reach it, so that mixed
/// workloads (random values, sample rates, tags) have some variety.
const MIN_POOL_PACKETS: usize = 4096;

/// Pools are cut at this many packets to bound memory (with 60 lines of
/// ~20 bytes, about 150 MB); then not every key is sent.
const MAX_POOL_PACKETS: usize = 1 << 17;

/// A statsd metric type the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `|c`, always the value 1 without a sample rate, so counts are exact.
    Counter,
    /// `|ms`, some with `|@0.5` or `|@0.1`.
    Timer,
    /// `|g`, some as `+n`/`-n` deltas.
    Gauge,
    /// `|s`, with a few members per key.
    Set,
    /// `|h` (DogStatsD histogram), some with `|@0.5`.
    Histogram,
}

impl Kind {
    /// Every kind, in the order of [`Mix`]'s weights.
    pub const ALL: [Kind; 5] = [
        Kind::Counter,
        Kind::Timer,
        Kind::Gauge,
        Kind::Set,
        Kind::Histogram,
    ];

    /// The statsd type field; also the name segment after the prefix.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Counter => "c",
            Kind::Timer => "ms",
            Kind::Gauge => "g",
            Kind::Set => "s",
            Kind::Histogram => "h",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Counter => 0,
            Kind::Timer => 1,
            Kind::Gauge => 2,
            Kind::Set => 3,
            Kind::Histogram => 4,
        }
    }
}

/// Why a `--mix` value was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MixError {
    /// An entry is not of the form `type=weight`.
    #[error("`{0}` is not type=weight")]
    Syntax(String),
    /// The type is not one the generator knows.
    #[error("unknown metric type `{0}` (expected c, ms, g, s or h)")]
    UnknownType(String),
    /// The weight is not a finite number >= 0.
    #[error("weight `{0}` is not a non-negative number")]
    Weight(String),
    /// The same type appears twice.
    #[error("metric type `{0}` is given twice")]
    Duplicate(String),
    /// Every weight is zero: nothing could be sent.
    #[error("every weight is zero")]
    Empty,
}

/// Relative weights of each metric type, e.g. `c=1,ms=0.5,g=0,s=0,h=0`.
/// Types left out weigh 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: [f64; 5],
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Mix, MixError> {
        let mut weights = [0.0; 5];
        let mut given = [false; 5];
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, weight) = entry
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(entry.to_string()))?;
            let (name, weight) = (name.trim(), weight.trim());
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.code() == name)
                .ok_or_else(|| MixError::UnknownType(name.to_string()))?;
            let w: f64 = weight
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| MixError::Weight(weight.to_string()))?;
            if given[kind.index()] {
                return Err(MixError::Duplicate(name.to_string()));
            }
            given[kind.index()] = true;
            weights[kind.index()] = w;
        }
        if weights.iter().all(|w| *w == 0.0) {
            return Err(MixError::Empty);
        }
        Ok(Mix { weights })
    }
}

impl std::fmt::Display for Mix {
    /// The non-zero weights as `--mix` takes them: `c=1,ms=0.5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for kind in Kind::ALL.into_iter().filter(|k| self.weight(*k) > 0.0) {
            let sep = if first { "" } else { "," };
            write!(f, "{sep}{}={}", kind.code(), self.weight(kind))?;
            first = false;
        }
        Ok(())
    }
}

impl Mix {
    /// The weight of one kind.
    pub fn weight(&self, kind: Kind) -> f64 {
        self.weights[kind.index()]
    }

    /// Whether only counters are sent (then every line adds exactly 1 to a
    /// `stats_counts.<prefix>.c.*` series).
    pub fn counters_only(&self) -> bool {
        Kind::ALL
            .into_iter()
            .all(|k| k == Kind::Counter || self.weight(k) == 0.0)
    }

    /// The kind for a uniform draw `u` in `[0, 1)`.
    pub fn pick(&self, u: f64) -> Kind {
        let total: f64 = self.weights.iter().sum();
        let mut at = u * total;
        let mut last = Kind::Counter;
        for kind in Kind::ALL {
            let w = self.weight(kind);
            if w == 0.0 {
                continue;
            }
            if at < w {
                return kind;
            }
            at -= w;
            last = kind;
        }
        // Rounding can leave `at` a hair above the last weight.
        last
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seedable generator. The load
/// needs reproducible variety, not statistical quality, so a dependency for it
/// is not worth it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Append one statsd line (no newline) for series `key` of `kind`.
///
/// With probability `tag_share` the line gets DogStatsD tags
/// `|#env:<e>,host:h<n>` from a small fixed set (so tags multiply the series
/// count by at most 8).
pub fn write_line(
    out: &mut Vec<u8>,
    prefix: &str,
    kind: Kind,
    key: usize,
    tag_share: f64,
    rng: &mut Rng,
) {
    // Writing into a Vec<u8> cannot fail, so the io::Result is dropped.
    let _ = write!(out, "{prefix}.{}.k{key}:", kind.code());
    match kind {
        Kind::Counter => out.extend_from_slice(b"1|c"),
        Kind::Timer => {
            let v = rng.below(1000);
            if rng.below(4) == 0 {
                let _ = write!(out, "{v}.{}|ms", rng.below(10));
            } else {
                let _ = write!(out, "{v}|ms");
            }
            write_rate(out, rng);
        }
        Kind::Gauge => {
            let r = rng.below(10);
            let v = rng.below(100);
            let sign = match r {
                0 | 1 => "+",
                2 => "-",
                _ => "",
            };
            let _ = write!(out, "{sign}{v}|g");
        }
        Kind::Set => {
            let _ = write!(out, "m{}|s", rng.below(8));
        }
        Kind::Histogram => {
            let _ = write!(out, "{}|h", rng.below(500));
            write_rate(out, rng);
        }
    }
    if tag_share > 0.0 && rng.unit() < tag_share {
        let env = if rng.below(2) == 0 { "prod" } else { "stage" };
        let _ = write!(out, "|#env:{env},host:h{}", rng.below(4));
    }
}

/// A sample rate on some lines: `|@0.5` with probability 1/4, `|@0.1` with 1/8.
fn write_rate(out: &mut Vec<u8>, rng: &mut Rng) {
    match rng.below(8) {
        0 | 1 => out.extend_from_slice(b"|@0.5"),
        2 => out.extend_from_slice(b"|@0.1"),
        _ => {}
    }
}

/// How to build a [`Pool`].
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// First name segment.
    pub prefix: String,
    /// Distinct key numbers, used in turn.
    pub keys: usize,
    /// Lines per datagram.
    pub lines_per_packet: usize,
    pub mix: Mix,
    /// Share of lines with tags, in `[0, 1]`.
    pub tag_share: f64,
    pub seed: u64,
}

/// Why a pool could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    /// A datagram would not fit in one UDP packet.
    #[error("a packet of {lines} lines is {bytes} bytes, more than the UDP maximum {MAX_DATAGRAM}; use fewer --lines-per-packet")]
    TooLarge {
        /// Lines in the packet.
        lines: usize,
        /// Its size.
        bytes: usize,
    },
    /// `keys` or `lines_per_packet` is zero.
    #[error("--keys and --lines-per-packet must be at least 1")]
    Zero,
}

/// One datagram inside [`Pool::bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Offset into the pool's bytes.
    pub start: usize,
    /// Length in bytes.
    pub len: usize,
    /// Counter lines in it (each adds exactly 1 to a counter).
    pub counters: u32,
}

/// Every datagram the sender cycles through, laid out back to back.
#[derive(Debug, Clone)]
pub struct Pool {
    pub bytes: Vec<u8>,
    pub packets: Vec<Packet>,
    pub lines_per_packet: usize,
    /// False when the pool was cut at its size limit before every key was used.
    pub covers_all_keys: bool,
}

impl Pool {
    /// Build the pool: line `n` (counting across packets) uses key `n % keys`,
    /// and the pool holds whole cycles of keys when that fits, so that every
    /// key is sent equally often.
    pub fn build(spec: &PoolSpec) -> Result<Pool, PoolError> {
        if spec.keys == 0 || spec.lines_per_packet == 0 {
            return Err(PoolError::Zero);
        }
        let lpp = spec.lines_per_packet;
        // Packets per full cycle of keys: lcm(keys, lpp) / lpp.
        let cycle = spec.keys / gcd(spec.keys, lpp);
        let n_packets = if cycle >= MIN_POOL_PACKETS {
            cycle.min(MAX_POOL_PACKETS)
        } else {
            cycle * MIN_POOL_PACKETS.div_ceil(cycle)
        };
        let mut rng = Rng::new(spec.seed);
        let mut bytes = Vec::new();
        let mut packets = Vec::with_capacity(n_packets);
        let mut line = 0usize;
        for _ in 0..n_packets {
            let start = bytes.len();
            let mut counters = 0;
            for i in 0..lpp {
                if i > 0 {
                    bytes.push(b'\n');
                }
                let kind = spec.mix.pick(rng.unit());
                if kind == Kind::Counter {
                    counters += 1;
                }
                write_line(
                    &mut bytes,
                    &spec.prefix,
                    kind,
                    line % spec.keys,
                    spec.tag_share,
                    &mut rng,
                );
                line += 1;
            }
            let len = bytes.len() - start;
            if len > MAX_DATAGRAM {
                return Err(PoolError::TooLarge {
                    lines: lpp,
                    bytes: len,
                });
            }
            packets.push(Packet {
                start,
                len,
                counters,
            });
        }
        Ok(Pool {
            bytes,
            packets,
            lines_per_packet: lpp,
            covers_all_keys: n_packets * lpp >= spec.keys,
        })
    }

    /// The bytes of one packet.
    #[cfg(test)]
    pub fn packet(&self, p: &Packet) -> &[u8] {
        &self.bytes[p.start..p.start + p.len]
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parsing() {
        let ok: &[(&str, [f64; 5])] = &[
            ("c=1", [1.0, 0.0, 0.0, 0.0, 0.0]),
            ("c=1,ms=0,g=0,s=0,h=0", [1.0, 0.0, 0.0, 0.0, 0.0]),
            (" c = 2 , ms=1.5,h=1 ", [2.0, 1.5, 0.0, 0.0, 1.0]),
            ("s=3", [0.0, 0.0, 0.0, 3.0, 0.0]),
            ("g=1,", [0.0, 0.0, 1.0, 0.0, 0.0]),
        ];
        for (input, want) in ok {
            let mix: Mix = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(mix.weights, *want, "{input}");
            // Display gives back an equivalent --mix value.
            assert_eq!(mix.to_string().parse::<Mix>(), Ok(mix.clone()), "{input}");
        }
        assert_eq!(
            "c=1,ms=0,h=2.5".parse::<Mix>().unwrap().to_string(),
            "c=1,h=2.5"
        );
        let bad: &[(&str, MixError)] = &[
            ("c", MixError::Syntax("c".into())),
            ("x=1", MixError::UnknownType("x".into())),
            ("c=-1", MixError::Weight("-1".into())),
            ("c=inf", MixError::Weight("inf".into())),
            ("c=abc", MixError::Weight("abc".into())),
            ("c=1,c=2", MixError::Duplicate("c".into())),
            ("c=0,ms=0", MixError::Empty),
            ("", MixError::Empty),
        ];
        for (input, want) in bad {
            assert_eq!(input.parse::<Mix>().unwrap_err(), *want, "{input}");
        }
    }

    #[test]
    fn mix_pick_follows_weights() {
        let mix: Mix = "c=1,ms=0,g=3".parse().unwrap();
        let cases = [
            (0.0, Kind::Counter),
            (0.2499, Kind::Counter),
            (0.25, Kind::Gauge),
            (0.9999, Kind::Gauge),
        ];
        for (u, want) in cases {
            assert_eq!(mix.pick(u), want, "u={u}");
        }
        assert!("c=1,ms=0".parse::<Mix>().unwrap().counters_only());
        assert!(!"c=1,h=1".parse::<Mix>().unwrap().counters_only());
        assert!(!"ms=1".parse::<Mix>().unwrap().counters_only());
    }

    /// The line shape per kind, as the reference statsd would split it:
    /// `name:value|type[|@rate][|#tags]`.
    #[test]
    fn lines_have_the_statsd_shape() {
        let mut rng = Rng::new(7);
        for kind in Kind::ALL {
            for i in 0..200 {
                let mut out = Vec::new();
                write_line(&mut out, "lg", kind, i, 0.5, &mut rng);
                let line = String::from_utf8(out).unwrap();
                let (body, tags) = match line.split_once("|#") {
                    Some((b, t)) => (b, Some(t)),
                    None => (line.as_str(), None),
                };
                let (name, rest) = body.split_once(':').unwrap();
                assert_eq!(name, format!("lg.{}.k{i}", kind.code()), "{line}");
                let fields: Vec<&str> = rest.split('|').collect();
                assert_eq!(fields[1], kind.code(), "{line}");
                match kind {
                    Kind::Counter => assert_eq!(fields, ["1", "c"], "{line}"),
                    Kind::Set => assert!(fields[0].starts_with('m'), "{line}"),
                    _ => assert!(fields[0].parse::<f64>().is_ok(), "{line}"),
                }
                if let Some(rate) = fields.get(2) {
                    assert!(matches!(kind, Kind::Timer | Kind::Histogram), "{line}");
                    assert!(["@0.5", "@0.1"].contains(rate), "{line}");
                }
                assert!(fields.len() <= 3, "{line}");
                if let Some(tags) = tags {
                    let t: Vec<&str> = tags.split(',').collect();
                    assert_eq!(t.len(), 2, "{line}");
                    assert!(t[0] == "env:prod" || t[0] == "env:stage", "{line}");
                    assert!(t[1].starts_with("host:h"), "{line}");
                }
            }
        }
    }

    #[test]
    fn tag_share_is_respected() {
        let cases = [(0.0, 0, 0), (1.0, 1000, 1000), (1.0 / 3.0, 290, 380)];
        for (share, lo, hi) in cases {
            let mut rng = Rng::new(1);
            let tagged = (0..1000)
                .filter(|i| {
                    let mut out = Vec::new();
                    write_line(&mut out, "p", Kind::Counter, *i, share, &mut rng);
                    out.windows(2).any(|w| w == b"|#")
                })
                .count();
            assert!((lo..=hi).contains(&tagged), "share {share}: {tagged}");
        }
    }

    fn spec(keys: usize, lpp: usize, mix: &str) -> PoolSpec {
        PoolSpec {
            prefix: "lg".into(),
            keys,
            lines_per_packet: lpp,
            mix: mix.parse().unwrap(),
            tag_share: 0.0,
            seed: 1,
        }
    }

    #[test]
    fn pool_cycles_keys_evenly() {
        // (keys, lines per packet, packets expected)
        let cases = [(1000, 20, 4100), (100_000, 60, 5000), (7, 3, 4102)];
        for (keys, lpp, want_packets) in cases {
            let pool = Pool::build(&spec(keys, lpp, "c=1")).unwrap();
            assert_eq!(pool.packets.len(), want_packets, "keys {keys} lpp {lpp}");
            assert!(pool.covers_all_keys);
            let mut seen = vec![0u32; keys];
            for p in &pool.packets {
                assert_eq!(p.counters as usize, lpp);
                let text = std::str::from_utf8(pool.packet(p)).unwrap();
                let lines: Vec<&str> = text.split('\n').collect();
                assert_eq!(lines.len(), lpp);
                for l in lines {
                    let k: usize = l
                        .strip_prefix("lg.c.k")
                        .and_then(|r| r.strip_suffix(":1|c"))
                        .unwrap()
                        .parse()
                        .unwrap();
                    seen[k] += 1;
                }
            }
            let first = seen[0];
            assert!(seen.iter().all(|n| *n == first), "uneven keys {keys}");
        }
    }

    #[test]
    fn pool_counts_counter_lines_in_a_mix() {
        let pool = Pool::build(&spec(100, 10, "c=1,ms=1,s=1")).unwrap();
        for p in &pool.packets {
            let text = std::str::from_utf8(pool.packet(p)).unwrap();
            let counters = text.split('\n').filter(|l| l.ends_with("|c")).count();
            assert_eq!(p.counters as usize, counters);
        }
        let total: u64 = pool.packets.iter().map(|p| p.counters as u64).sum();
        let lines = (pool.packets.len() * 10) as u64;
        // A third of the lines, give or take.
        assert!(
            total > lines / 4 && total < lines * 5 / 12,
            "{total} of {lines}"
        );
    }

    #[test]
    fn pool_refuses_oversized_packets_and_zero() {
        let err = Pool::build(&spec(10, 10_000, "c=1")).unwrap_err();
        assert!(matches!(err, PoolError::TooLarge { lines: 10_000, .. }));
        assert_eq!(
            Pool::build(&spec(0, 1, "c=1")).unwrap_err(),
            PoolError::Zero
        );
        assert_eq!(
            Pool::build(&spec(1, 0, "c=1")).unwrap_err(),
            PoolError::Zero
        );
    }

    #[test]
    fn pool_is_reproducible() {
        let a = Pool::build(&spec(50, 5, "c=1,ms=1,g=1,s=1,h=1")).unwrap();
        let b = Pool::build(&spec(50, 5, "c=1,ms=1,g=1,s=1,h=1")).unwrap();
        assert_eq!(a.bytes, b.bytes);
    }
}
