//! The shard's per-type maps: canonical key bytes → one interval's aggregate,
//! built for the receive thread's lookup of every value.
//!
//! # Why not a `HashMap<MetricKey, V>`
//!
//! At high cardinality (100,000 series on one thread) nearly every value is
//! a cache miss: the table is megabytes, and the datagrams streaming through
//! the receive buffer push it out of cache between two values of the same
//! series. A `HashMap<MetricKey, V>` misses up to three times per value, one
//! after the other: its control bytes, its bucket, then the key bytes behind
//! the `Arc` that the bucket points to. Profiled at W2 (docs/benchmarks.md),
//! the lookup and the key compare took more than half of the server's CPU.
//!
//! This map keeps the parts apart so that each miss can be started early,
//! many values ahead, and overlap with the others:
//!
//! - `entries`, a dense `Vec` in insertion order, holds each series' hash,
//!   its key bytes (inline up to [`INLINE`] bytes, so that the compare
//!   reads the cache lines the value is on) and its value;
//! - `index` is an open-addressing table of 8-byte slots, each 32 bits of a
//!   hash and an entry's position, probed linearly from the slot the hash
//!   picks: about an eighth of the entries' size, and the slot a hash
//!   starts from is known before anything is read, so it can be prefetched.
//!
//! A lookup goes in three steps that the caller spreads over the values
//! it queues: [`KeyMap::prefetch_slot`] when a value arrives;
//! [`KeyMap::candidate`] some values later, when the slot is in cache,
//! which reads the index alone and names the entry that probably holds the
//! key, and [`KeyMap::prefetch`] of that entry; [`KeyMap::find_mut`] some
//! values later again, which verifies the candidate against the key (two
//! keys may share 32 bits of hash) and falls back to the exact lookup.
//! Entries never move (the shard never deletes; the whole map is taken at
//! the end of the interval), so a position stays valid.
//!
//! The index is written here rather than taken from hashbrown because
//! hashbrown's tables do not say where a hash's group lies, so they cannot
//! be prefetched; without deletions the index needs no more than a probe
//! loop and a rebuild on growth. The hash is computed once per value by
//! the shard, and stored, so that growing never reads a key again.
//!
//! Imports nothing of the crate outside `aggregate`.

/// Key bytes kept inside the entry. 38 makes a counter's entry (hash, key,
/// value and hit count) 64 bytes: one cache line's worth.
pub(crate) const INLINE: usize = 38;

/// A key, inline when it is at most [`INLINE`] bytes.
#[derive(Clone)]
pub(crate) enum KeyBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    #[inline]
    pub(crate) fn new(key: &[u8]) -> KeyBytes {
        if key.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            KeyBytes::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBytes::Heap(key.into())
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyBytes::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[derive(Debug)]
struct Entry<V> {
    hash: u64,
    key: KeyBytes,
    value: V,
}

/// An empty index slot. A full one is `short << 32 | (position + 1)`.
const EMPTY: u64 = 0;

/// The part of the hash an index slot keeps, which also picks the slot a
/// probe starts from: enough to tell almost every two keys apart without
/// reading their entries.
#[inline]
fn short(hash: u64) -> u32 {
    hash as u32
}

#[inline]
fn slot(short: u32, at: u32) -> u64 {
    (u64::from(short) << 32) | (u64::from(at) + 1)
}

/// Canonical key bytes → `V`, for one interval. See the module doc.
#[derive(Debug)]
pub(crate) struct KeyMap<V> {
    /// A power of two in length (or empty), at most three quarters full.
    index: Vec<u64>,
    entries: Vec<Entry<V>>,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            index: Vec::new(),
            entries: Vec::new(),
        }
    }
}

impl<V> KeyMap<V> {
    /// An empty map with room for `n` series.
    pub(crate) fn with_capacity(n: usize) -> KeyMap<V> {
        KeyMap {
            index: vec![EMPTY; index_len(n)],
            entries: Vec::with_capacity(n),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot where a probe for `short` starts.
    #[inline]
    fn home(&self, short: u32) -> usize {
        short as usize & (self.index.len().wrapping_sub(1))
    }

    /// The positions of the entries whose slots carry `short`, in probe
    /// order, ending at the first empty slot.
    #[inline]
    fn probe(&self, short: u32) -> impl Iterator<Item = u32> + '_ {
        let mask = self.index.len().wrapping_sub(1);
        let mut i = self.home(short);
        let mut done = self.index.is_empty();
        std::iter::from_fn(move || {
            while !done {
                let v = self.index[i];
                i = (i + 1) & mask;
                if v == EMPTY {
                    done = true;
                } else if (v >> 32) as u32 == short {
                    return Some((v as u32).wrapping_sub(1));
                }
            }
            None
        })
    }

    /// Ask the CPU to start loading the index slot a lookup of `hash`
    /// starts from.
    #[inline]
    pub(crate) fn prefetch_slot(&self, hash: u64) {
        if !self.index.is_empty() {
            prefetch(self.index[self.home(short(hash))..].as_ptr().cast());
        }
    }

    /// The position of the entry that probably holds `hash`'s key, from the
    /// index alone; `None` when no entry has this hash (a new key, unless
    /// it is inserted before the caller comes back).
    #[inline]
    pub(crate) fn candidate(&self, hash: u64) -> Option<u32> {
        self.probe(short(hash)).next()
    }

    /// Ask the CPU to start loading the entry at `at` (a [`candidate`]).
    ///
    /// [`candidate`]: KeyMap::candidate
    #[inline]
    pub(crate) fn prefetch(&self, at: u32) {
        if let Some(e) = self.entries.get(at as usize) {
            let start = std::ptr::from_ref(e).cast::<u8>();
            prefetch(start);
            // An entry may straddle two cache lines.
            prefetch(start.wrapping_add(std::mem::size_of::<Entry<V>>() - 1));
        }
    }

    /// Whether the entry at `at` holds `key`.
    #[inline]
    fn holds(&self, at: u32, hash: u64, key: &[u8]) -> bool {
        matches!(self.entries.get(at as usize), Some(e) if e.hash == hash && e.key.as_bytes() == key)
    }

    /// The value of `key`, whose hash is `hash`, looked for first in the
    /// entry at `at` (a [`candidate`](KeyMap::candidate)), then in the index.
    #[inline]
    pub(crate) fn find_mut(&mut self, at: Option<u32>, hash: u64, key: &[u8]) -> Option<&mut V> {
        let at = match at {
            Some(at) if self.holds(at, hash, key) => at,
            _ => self
                .probe(short(hash))
                .find(|&at| self.holds(at, hash, key))?,
        };
        Some(&mut self.entries[at as usize].value)
    }

    /// Add `key`, which the map does not hold.
    pub(crate) fn insert_new(&mut self, hash: u64, key: &[u8], value: V) {
        // Past u32::MAX series a shard would hold some 300 GB; the server's
        // series limit stops far before.
        let at = u32::try_from(self.entries.len()).expect("fewer than 2^32 series in a shard");
        if index_len(self.entries.len() + 1) > self.index.len() {
            self.grow();
        }
        self.place(slot(short(hash), at));
        self.entries.push(Entry {
            hash,
            key: KeyBytes::new(key),
            value,
        });
    }

    /// Put a full slot in the first empty one of its probe.
    fn place(&mut self, v: u64) {
        let mask = self.index.len() - 1;
        let mut i = self.home((v >> 32) as u32);
        while self.index[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.index[i] = v;
    }

    /// Double the index, from the slots alone.
    fn grow(&mut self) {
        let len = (self.index.len() * 2).max(16);
        let old = std::mem::replace(&mut self.index, vec![EMPTY; len]);
        for v in old.into_iter().filter(|&v| v != EMPTY) {
            self.place(v);
        }
    }

    /// Every key and value, in insertion order.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = (KeyBytes, V)> {
        self.entries.into_iter().map(|e| (e.key, e.value))
    }
}

/// Index slots for `n` series: a power of two, at most three quarters full.
fn index_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n * 4).div_ceil(3).next_power_of_two().max(16)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(p: *const u8) {
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into
    // the program's state, whatever the address. SSE is part of x86_64.
    unsafe { std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch(_: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn find_insert_and_candidates() {
        let hasher = foldhash::fast::FixedState::with_seed(7);
        let mut m: KeyMap<u64> = KeyMap::default();
        let keys: Vec<Vec<u8>> = (0..5000)
            .map(|i| {
                // Short (inline) and long (heap) keys.
                let mut k = format!("k.{i}").into_bytes();
                if i % 3 == 0 {
                    k.extend_from_slice(&[b'x'; 50]);
                }
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let h = hasher.hash_one(k);
            assert!(m.find_mut(None, h, k).is_none());
            m.insert_new(h, k, i as u64);
        }
        assert_eq!(m.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            let h = hasher.hash_one(k);
            let at = m.candidate(h).expect("a candidate");
            m.prefetch(at);
            assert_eq!(at as usize, i);
            assert!(m.holds(at, h, k));
            *m.find_mut(Some(at), h, k).expect("present") += 1;
        }
        // A wrong guess is not taken for the key.
        let h = hasher.hash_one(&keys[0]);
        assert!(!m.holds(1, h, &keys[0]));
        assert!(!m.holds(u32::MAX, h, &keys[0]));
        assert_eq!(m.find_mut(Some(1), h, &keys[0]).copied(), Some(1));
        assert_eq!(m.find_mut(None, h, &keys[0]).copied(), Some(1));
        // Two keys whose short hashes collide are still told apart.
        let (a, b) = (0x1234_0000_0000_0042_u64, 0x9999_0000_0000_0042_u64);
        m.insert_new(a, b"colliding-a", 1);
        m.insert_new(b, b"colliding-b", 2);
        assert_eq!(m.find_mut(None, a, b"colliding-a").copied(), Some(1));
        assert_eq!(m.find_mut(None, b, b"colliding-b").copied(), Some(2));
        let got: Vec<(Vec<u8>, u64)> = m
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        assert_eq!(got.len(), keys.len() + 2);
        assert_eq!(got[0], (keys[0].clone(), 1));
        assert_eq!(got[3].0, keys[3]);
    }

    #[test]
    fn index_stays_at_most_three_quarters_full() {
        let mut m: KeyMap<()> = KeyMap::with_capacity(12);
        assert_eq!(m.index.len(), 16);
        for i in 0..1000u64 {
            let k = i.to_le_bytes();
            m.insert_new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), &k, ());
            assert!(m.index.len().is_power_of_two());
            assert!(
                m.len() * 4 <= m.index.len() * 3,
                "{} in {}",
                m.len(),
                m.index.len()
            );
        }
        for i in 0..1000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            m.prefetch_slot(h);
            assert!(m.find_mut(None, h, &i.to_le_bytes()).is_some());
        }
    }

    #[test]
    fn counter_entry_is_a_cache_line() {
        assert_eq!(std::mem::size_of::<Entry<(f64, u32)>>(), 64);
        assert_eq!(std::mem::size_of::<KeyBytes>(), 40);
    }
}
