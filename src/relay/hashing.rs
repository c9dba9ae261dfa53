//! Where a metric goes: the consistent-hash placements of carbon and of
//! carbon-c-relay, reproduced exactly so that no whisper file moves when
//! statsyard replaces either relay.
//!
//! Four [`Method`]s, by the names operators know:
//!
//! - `carbon_ch`: carbon 1.1.7's `ConsistentHashRing` with its
//!   `ConsistentHashingRouter` (`carbon/hashing.py`, `carbon/routers.py`).
//!   Each destination is a ring node `(server, instance)` with 100 replicas
//!   keyed by the Python repr `('host', 'instance'):i` (`None` without an
//!   instance). A replica's position is the first two bytes of the MD5 of its
//!   key, read big-endian; a position already taken is bumped by +1 until it
//!   is free, in the order the destinations are listed (so positions can
//!   exceed 65535). A name's position is the same two MD5 bytes of the name;
//!   lookup is Python's `bisect_left` on the ring with wrap-around, then a
//!   walk collecting distinct nodes. With `diverse` (carbon's
//!   `DIVERSE_REPLICAS`, on by default) replicas go to distinct servers.
//! - `fnv1a_ch`: the same ring with carbon's `hash_type = 'fnv1a_ch'`: the
//!   position is the 32-bit FNV-1a hash folded to 16 bits
//!   (`(h >> 16) ^ (h & 0xffff)`), and replica keys are `i-instance` (so
//!   `i-None` for every node without an instance, which carbon then
//!   separates only through the +1 bump).
//! - `carbon_c_relay_ch`: carbon-c-relay 3.7's `carbon_ch`. Same replica keys
//!   and positions, but no +1 bump: replicas are sorted by position, then
//!   host, then instance (none last), and a run of equal positions belongs to
//!   the first of the run. Replicas are distinct destinations, never
//!   "diverse" by host. See docs/relay-placement.md for where this differs
//!   from carbon.
//! - `jump_fnv1a_ch`: carbon-c-relay 3.7's jump consistent hash (Lamping and
//!   Veach) over the 64-bit FNV-1a of the name. Destinations with an
//!   instance come first, sorted by instance (numerically when both are
//!   numbers), then those without, in the order listed. Further replicas
//!   re-hash with xorshift and remove the chosen destination.
//!
//! carbon-c-relay hashes bytes as C `char`s, which are signed on the
//! platforms it ships for: a byte >= 0x80 is sign-extended before the FNV xor.
//! statsyard does the same, so that non-ASCII names land where they did.
//!
//! The ring is built once; [`Ring::place`] allocates nothing beyond growing
//! the caller's output vector.
//!
//! Imports nothing of the crate outside `relay`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

/// Why a destination list or method name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// The destination is not `host:port[:instance]` (or `[v6]:port[:instance]`).
    #[error("invalid destination {0:?}: expected host:port[:instance]")]
    InvalidDestination(String),
    /// The port of a destination is not a number from 0 to 65535.
    #[error("invalid port in destination {0:?}")]
    InvalidPort(String),
    /// The method name is not one of the supported ones.
    #[error(
        "unknown hashing method {0:?}: expected carbon_ch, fnv1a_ch, jump_fnv1a_ch or carbon_c_relay_ch"
    )]
    UnknownMethod(String),
    /// A hashed cluster needs at least one destination.
    #[error("a hashed cluster needs at least one destination")]
    NoDestinations,
    /// The replication factor must be at least 1.
    #[error("replication must be at least 1")]
    ZeroReplication,
    /// carbon refuses two destinations with the same host and instance
    /// (the port is not part of a ring node), and carbon-c-relay two equal
    /// destinations: the ring could not tell them apart.
    #[error("destination {0} is listed twice (same host and instance); give each an instance")]
    DuplicateNode(String),
}

/// A destination written the carbon way: `host:port[:instance]`.
///
/// An IPv6 host is written in brackets, `[::1]:2004:a`, as carbon parses it;
/// `host` holds it without the brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Host name or address, exactly as written (it is part of the hash key).
    pub host: String,
    /// TCP (or UDP) port.
    pub port: u16,
    /// Instance name; part of the ring key. `Some("")` (a trailing `:`) is
    /// kept apart from `None`, as carbon does.
    pub instance: Option<String>,
}

impl Destination {
    /// Parse `host:port[:instance]` as carbon's `util.parseDestination` does:
    /// surrounding whitespace is ignored, a host starting with `[` ends at
    /// the last `]:`, otherwise at the first `:`; everything after the port's
    /// `:` is the instance.
    pub fn parse(s: &str) -> Result<Destination, HashError> {
        let bad = || HashError::InvalidDestination(s.to_string());
        let t = s.trim();
        let (host, rest) = if let Some(inner) = t.strip_prefix('[') {
            let end = inner.rfind("]:").ok_or_else(bad)?;
            (&inner[..end], &inner[end + 2..])
        } else {
            t.split_once(':').ok_or_else(bad)?
        };
        if host.is_empty() {
            return Err(bad());
        }
        let (port, instance) = match rest.split_once(':') {
            Some((p, i)) => (p, Some(i.to_string())),
            None => (rest, None),
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HashError::InvalidPort(s.to_string()));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| HashError::InvalidPort(s.to_string()))?;
        Ok(Destination {
            host: host.to_string(),
            port,
            instance,
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if let Some(i) = &self.instance {
            write!(f, ":{i}")?;
        }
        Ok(())
    }
}

impl FromStr for Destination {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Destination::parse(s)
    }
}

/// A consistent-hash placement method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// carbon's `carbon_ch` (MD5 ring with +1 bump), bit for bit.
    CarbonCh,
    /// carbon's `fnv1a_ch` (FNV-1a ring keyed by instance), bit for bit.
    Fnv1aCh,
    /// carbon-c-relay's `jump_fnv1a_ch`.
    JumpFnv1aCh,
    /// carbon-c-relay's `carbon_ch`, which differs from carbon's on position
    /// collisions and replica choice.
    CarbonCRelayCh,
}

impl Method {
    /// The configuration name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::CarbonCh => "carbon_ch",
            Method::Fnv1aCh => "fnv1a_ch",
            Method::JumpFnv1aCh => "jump_fnv1a_ch",
            Method::CarbonCRelayCh => "carbon_c_relay_ch",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "carbon_ch" => Ok(Method::CarbonCh),
            "fnv1a_ch" => Ok(Method::Fnv1aCh),
            "jump_fnv1a_ch" => Ok(Method::JumpFnv1aCh),
            "carbon_c_relay_ch" => Ok(Method::CarbonCRelayCh),
            other => Err(HashError::UnknownMethod(other.to_string())),
        }
    }
}

/// Replicas per node on the ring, hardwired in carbon and carbon-c-relay.
const REPLICAS: usize = 100;

/// A built placement for one destination list.
#[derive(Debug, Clone)]
pub struct Ring {
    method: Method,
    replication: usize,
    diverse: bool,
    /// Ring positions in ascending order (ring methods only). u32 because
    /// carbon's +1 bump can push a position past 65535.
    positions: Vec<u32>,
    /// The destination index of each ring entry, parallel to `positions`.
    owners: Vec<u32>,
    /// Per destination: an id shared by destinations with the same host
    /// (carbon's "server" for `DIVERSE_REPLICAS`).
    host_id: Vec<u32>,
    /// jump_fnv1a_ch: destination indices in bucket order.
    jump_order: Vec<u32>,
    /// Number of destinations.
    nodes: usize,
}

impl Ring {
    /// Build the placement of `dests` for `method`. `replication` is how
    /// many destinations each name goes to (capped at what exists);
    /// `diverse` is carbon's `DIVERSE_REPLICAS` (only `carbon_ch` and
    /// `fnv1a_ch` use it; carbon-c-relay has no such setting).
    pub fn new(
        method: Method,
        dests: &[Destination],
        replication: usize,
        diverse: bool,
    ) -> Result<Ring, HashError> {
        if dests.is_empty() {
            return Err(HashError::NoDestinations);
        }
        if replication == 0 {
            return Err(HashError::ZeroReplication);
        }
        // Duplicate detection: carbon keys nodes by (server, instance);
        // carbon-c-relay's servers are whole host:port:instance triples.
        let mut seen = HashSet::new();
        for d in dests {
            let fresh = match method {
                Method::CarbonCh | Method::Fnv1aCh => {
                    seen.insert((d.host.clone(), None, d.instance.clone()))
                }
                Method::CarbonCRelayCh | Method::JumpFnv1aCh => {
                    seen.insert((d.host.clone(), Some(d.port), d.instance.clone()))
                }
            };
            if !fresh {
                return Err(HashError::DuplicateNode(d.to_string()));
            }
        }
        let mut host_id = Vec::with_capacity(dests.len());
        for d in dests {
            let id = dests
                .iter()
                .position(|o| o.host == d.host)
                .unwrap_or_default();
            host_id.push(id as u32);
        }
        let mut ring = Ring {
            method,
            replication,
            diverse,
            positions: Vec::new(),
            owners: Vec::new(),
            host_id,
            jump_order: Vec::new(),
            nodes: dests.len(),
        };
        match method {
            Method::CarbonCh | Method::Fnv1aCh => ring.build_carbon(dests),
            Method::CarbonCRelayCh => ring.build_c_relay(dests),
            Method::JumpFnv1aCh => ring.build_jump(dests),
        }
        Ok(ring)
    }

    /// The method this ring places with.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The replication factor this ring was built with.
    pub fn replication(&self) -> usize {
        self.replication
    }

    /// carbon's `ConsistentHashRing.add_node` for each destination in order.
    fn build_carbon(&mut self, dests: &[Destination]) {
        let mut taken: HashSet<u32> = HashSet::with_capacity(dests.len() * REPLICAS);
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(dests.len() * REPLICAS);
        let mut key = String::new();
        for (idx, d) in dests.iter().enumerate() {
            for i in 0..REPLICAS {
                key.clear();
                let mut pos = if self.method == Method::Fnv1aCh {
                    // "%d-%s" % (i, instance): None formats as "None".
                    key.push_str(&format!("{i}-{}", d.instance.as_deref().unwrap_or("None")));
                    u32::from(fnv1a_pos(key.as_bytes()))
                } else {
                    key.push('(');
                    py_repr_str(&d.host, &mut key);
                    key.push_str(", ");
                    match &d.instance {
                        Some(inst) => py_repr_str(inst, &mut key),
                        None => key.push_str("None"),
                    }
                    key.push_str(&format!("):{i}"));
                    u32::from(md5_pos(key.as_bytes()))
                };
                while taken.contains(&pos) {
                    pos += 1;
                }
                taken.insert(pos);
                entries.push((pos, idx as u32));
            }
        }
        // Positions are unique, so sorting by position alone is insort's order.
        entries.sort_unstable_by_key(|e| e.0);
        self.positions = entries.iter().map(|e| e.0).collect();
        self.owners = entries.iter().map(|e| e.1).collect();
    }

    /// carbon-c-relay's `ch_addnode` for `carbon_ch`.
    fn build_c_relay(&mut self, dests: &[Destination]) {
        let mut entries: Vec<(u16, u32)> = Vec::with_capacity(dests.len() * REPLICAS);
        let mut key = String::new();
        for (idx, d) in dests.iter().enumerate() {
            for i in 0..REPLICAS {
                key.clear();
                match &d.instance {
                    Some(inst) => key.push_str(&format!("('{}', '{inst}'):{i}", d.host)),
                    None => key.push_str(&format!("('{}', None):{i}", d.host)),
                }
                // snprintf into a 256-byte buffer: longer keys are cut.
                let bytes = &key.as_bytes()[..key.len().min(255)];
                entries.push((md5_pos(bytes), idx as u32));
            }
        }
        entries.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let (l, r) = (&dests[a.1 as usize], &dests[b.1 as usize]);
                l.host.as_bytes().cmp(r.host.as_bytes()).then_with(|| {
                    match (&l.instance, &r.instance) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
                    }
                })
            })
        });
        // A run of equal positions belongs to its first entry.
        for i in 1..entries.len() {
            if entries[i].0 == entries[i - 1].0 {
                entries[i].1 = entries[i - 1].1;
            }
        }
        self.positions = entries.iter().map(|e| u32::from(e.0)).collect();
        self.owners = entries.iter().map(|e| e.1).collect();
    }

    /// carbon-c-relay's bucket order for `jump_fnv1a_ch`.
    fn build_jump(&mut self, dests: &[Destination]) {
        let mut order: Vec<u32> = (0..dests.len() as u32).collect();
        order.sort_by(|&a, &b| {
            use std::cmp::Ordering;
            let (l, r) = (&dests[a as usize].instance, &dests[b as usize].instance);
            match (l, r) {
                (None, None) => a.cmp(&b),
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => match (c_strtol_full(x), c_strtol_full(y)) {
                    (Some(vx), Some(vy)) => vx.cmp(&vy),
                    _ => x.as_bytes().cmp(y.as_bytes()),
                },
            }
        });
        self.jump_order = order;
    }

    /// Indices into the destination list where `name` goes, in carbon's
    /// order (the first is the primary), at most `replication` of them and
    /// each at most once. `out` is cleared first.
    ///
    /// carbon's router yields the only destination twice when the ring has
    /// one node and replication is above 1; carbon-relay then sends once
    /// (its factories are a set), and so does this.
    pub fn place(&self, name: &[u8], out: &mut Vec<usize>) {
        out.clear();
        match self.method {
            Method::CarbonCh | Method::Fnv1aCh => self.carbon_place(name, out, false),
            Method::CarbonCRelayCh => self.c_relay_place(name, self.replication, out),
            Method::JumpFnv1aCh => self.jump_place(name, self.replication, out),
        }
    }

    /// Every destination, in the order this method would pick them as
    /// replicas for `name`: the first `replication` are [`Ring::place`]'s,
    /// the rest are where an `any_of`-style failover would go next.
    /// `out` is cleared first.
    pub fn walk(&self, name: &[u8], out: &mut Vec<usize>) {
        out.clear();
        match self.method {
            Method::CarbonCh | Method::Fnv1aCh => self.carbon_place(name, out, true),
            Method::CarbonCRelayCh => self.c_relay_place(name, self.nodes, out),
            Method::JumpFnv1aCh => self.jump_place(name, self.nodes, out),
        }
    }

    fn name_pos(&self, name: &[u8]) -> u32 {
        match self.method {
            Method::Fnv1aCh => u32::from(fnv1a_pos(name)),
            _ => u32::from(md5_pos(name)),
        }
    }

    /// `ConsistentHashRing.get_nodes` as consumed by
    /// `ConsistentHashingRouter.getDestinations`. `out` doubles as
    /// get_nodes' set of yielded nodes, so nothing is allocated; with
    /// `diverse` it is compacted to the first node per host at the end.
    fn carbon_place(&self, name: &[u8], out: &mut Vec<usize>, all: bool) {
        let len = self.positions.len();
        if len == 0 {
            return;
        }
        if self.nodes == 1 {
            // get_nodes yields the lone node, then finds it again on the
            // ring; the duplicate is dropped (see `place`).
            out.push(0);
            return;
        }
        let pos = self.name_pos(name);
        let mut index = self.positions.partition_point(|&p| p < pos) % len;
        let last_index = (index + len - 1) % len;
        let want = if all { usize::MAX } else { self.replication };
        let mut hosts_used = 0usize;
        while out.len() < self.nodes && index != last_index {
            let node = self.owners[index] as usize;
            if !out.contains(&node) {
                if !self.diverse {
                    out.push(node);
                    if out.len() >= want {
                        return;
                    }
                } else {
                    let host = self.host_id[node];
                    let fresh_host = !out.iter().any(|&n| self.host_id[n] == host);
                    out.push(node);
                    if fresh_host {
                        hosts_used += 1;
                        if hosts_used >= want {
                            break;
                        }
                    }
                }
            }
            index = (index + 1) % len;
        }
        if self.diverse {
            // Diverse replicas are the first node of each host, in ring
            // order. Move them to the front (a stable partition, so a walk
            // starts with exactly what `place` returns) and, for `place`,
            // drop the rest.
            let mut kept = 0;
            for i in 0..out.len() {
                let host = self.host_id[out[i]];
                if !out[..kept].iter().any(|&n| self.host_id[n] == host) {
                    out[kept..=i].rotate_right(1);
                    kept += 1;
                }
            }
            if !all {
                out.truncate(kept.min(want));
            }
        }
    }

    /// carbon-c-relay's `ch_get_nodes` for `carbon_ch`.
    fn c_relay_place(&self, name: &[u8], replication: usize, out: &mut Vec<usize>) {
        let len = self.positions.len();
        if len == 0 {
            return;
        }
        let want = replication.min(self.nodes);
        let pos = u32::from(md5_pos(name));
        let mut t = self.positions.partition_point(|&p| p < pos);
        // c-relay loops until it has enough distinct servers; a server
        // shadowed by collisions may be missing, so stop after one turn.
        for _ in 0..len {
            if out.len() >= want {
                break;
            }
            if t >= len {
                t = 0;
            }
            let node = self.owners[t] as usize;
            if !out.contains(&node) {
                out.push(node);
            }
            t += 1;
        }
    }

    /// carbon-c-relay's `ch_get_nodes` for `jump_fnv1a_ch`. c-relay copies
    /// the bucket list, picks bucket `j`, then fills the hole with the last
    /// live bucket and re-hashes. `out` holds that list; each chosen
    /// destination is parked in the slot the live list just gave up, so the
    /// picks end up at the tail in reverse order and nothing is allocated.
    fn jump_place(&self, name: &[u8], replication: usize, out: &mut Vec<usize>) {
        let n = self.jump_order.len();
        let want = replication.min(n);
        out.extend(self.jump_order.iter().map(|&d| d as usize));
        let mut hash = fnv1a64_signed(name);
        let mut live = n;
        while live > 0 && n - live < want {
            let j = jump_bucket(hash, live as i64) as usize;
            let chosen = out[j];
            live -= 1;
            out[j] = out[live];
            out[live] = chosen;
            hash ^= hash >> 12;
            hash ^= hash << 25;
            hash ^= hash >> 27;
            hash = hash.wrapping_mul(2685821657736338717);
        }
        out.drain(..live);
        out.reverse();
    }
}

/// carbon's position of a key: the first two bytes of its MD5, big-endian.
fn md5_pos(key: &[u8]) -> u16 {
    let digest = Md5::digest(key);
    u16::from_be_bytes([digest[0], digest[1]])
}

/// carbon's `fnv1a_ch` position: 32-bit FNV-1a folded to 16 bits. carbon
/// hashes unsigned bytes (Python 3 bytes iterate as ints).
fn fnv1a_pos(key: &[u8]) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// carbon-c-relay's 64-bit FNV-1a over C `char`s (signed: bytes >= 0x80
/// are sign-extended before the xor).
fn fnv1a64_signed(key: &[u8]) -> u64 {
    let mut h: u64 = 14695981039346656037;
    for &b in key {
        h ^= b as i8 as i64 as u64;
        h = h.wrapping_mul(1099511628211);
    }
    h
}

/// Lamping and Veach's jump consistent hash, computed as carbon-c-relay
/// does (in doubles).
fn jump_bucket(mut key: u64, buckets: i64) -> i64 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b
}

/// C's `strtol(s, &end, 10)` when it consumes the whole string (leading
/// whitespace and a sign allowed, at least one digit); saturating like
/// strtol does on overflow.
fn c_strtol_full(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        let d = i64::from(b - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
    }
    Some(v)
}

/// Python 3's `repr()` of a `str`, appended to `out`: single quotes unless
/// the text holds a `'` and no `"`; backslash escapes for the quote, `\\`,
/// `\t`, `\n`, `\r` and other non-printable characters.
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable` that is exact for ASCII
/// and Latin-1 (what host names and instances are made of): controls,
/// U+00A0 and U+00AD are not printable; other characters are taken as
/// printable.
fn py_printable(c: char) -> bool {
    !(c.is_control() || c == '\u{a0}' || c == '\u{ad}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(list: &[&str]) -> Vec<Destination> {
        list.iter()
            .map(|s| Destination::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn parses_destinations_like_carbon() {
        let d = Destination::parse(" 10.0.0.1:2004:a ").unwrap();
        assert_eq!(d.host, "10.0.0.1");
        assert_eq!(d.port, 2004);
        assert_eq!(d.instance.as_deref(), Some("a"));
        assert_eq!(d.to_string(), "10.0.0.1:2004:a");
        let d = Destination::parse("[::1]:2004").unwrap();
        assert_eq!(d.host, "::1");
        assert_eq!(d.instance, None);
        assert_eq!(d.to_string(), "[::1]:2004");
        let d = Destination::parse("h:1:").unwrap();
        assert_eq!(d.instance.as_deref(), Some(""));
        assert_eq!(d.instance.as_deref(), Some(""));
        assert!(Destination::parse("host").is_err());
        assert!(Destination::parse("host:").is_err());
        assert!(Destination::parse("host:99999").is_err());
        assert!(Destination::parse(":2003").is_err());
        assert!(Destination::parse("h:x1").is_err());
    }

    #[test]
    fn method_names_round_trip() {
        for m in [
            "carbon_ch",
            "fnv1a_ch",
            "jump_fnv1a_ch",
            "carbon_c_relay_ch",
        ] {
            assert_eq!(m.parse::<Method>().unwrap().to_string(), m);
        }
        assert!("consistent-hashing".parse::<Method>().is_err());
    }

    #[test]
    fn python_repr() {
        let mut s = String::new();
        py_repr_str("a'b", &mut s);
        assert_eq!(s, "\"a'b\"");
        s.clear();
        py_repr_str("a'\"b\\", &mut s);
        assert_eq!(s, "'a\\'\"b\\\\'");
    }

    // Values computed with carbon's own hashing.py (python3):
    // carbonHash("('127.0.0.1', None):0", 'carbon_ch') and friends.
    #[test]
    fn positions_match_carbon() {
        assert_eq!(md5_pos(b"('127.0.0.1', None):0"), 52941);
        assert_eq!(fnv1a_pos(b"0-None"), 18379);
    }

    #[test]
    fn carbon_refuses_same_host_without_instance() {
        let d = dests(&["127.0.0.1:2004", "127.0.0.1:2104"]);
        assert!(matches!(
            Ring::new(Method::CarbonCh, &d, 1, true),
            Err(HashError::DuplicateNode(_))
        ));
        assert!(Ring::new(Method::CarbonCRelayCh, &d, 1, true).is_ok());
    }

    #[test]
    fn single_node_goes_once() {
        let d = dests(&["127.0.0.1:2004"]);
        let r = Ring::new(Method::CarbonCh, &d, 3, false).unwrap();
        let mut out = Vec::new();
        r.place(b"a.b.c", &mut out);
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn replicas_are_distinct_and_bounded() {
        let d = dests(&["a:1:x", "a:2:y", "b:1", "c:1"]);
        let mut out = Vec::new();
        for (m, diverse) in [
            (Method::CarbonCh, false),
            (Method::Fnv1aCh, false),
            (Method::JumpFnv1aCh, false),
            (Method::CarbonCRelayCh, false),
            (Method::CarbonCh, true),
            (Method::Fnv1aCh, true),
        ] {
            // Diverse replicas: at most one per host, and three hosts.
            let most = if diverse { 3 } else { 4 };
            for rf in 1..=5 {
                let r = Ring::new(m, &d, rf, diverse).unwrap();
                for n in 0..200 {
                    let name = format!("metric.{n}");
                    r.place(name.as_bytes(), &mut out);
                    assert_eq!(out.len(), rf.min(most), "{m} rf {rf} diverse {diverse}");
                    let mut s = out.clone();
                    s.sort();
                    s.dedup();
                    assert_eq!(s.len(), out.len());
                    let placed = out.clone();
                    r.walk(name.as_bytes(), &mut out);
                    assert_eq!(out.len(), 4, "{m} walk visits every destination");
                    assert_eq!(&out[..placed.len()], &placed[..], "{m} walk prefix");
                }
            }
        }
    }
}
