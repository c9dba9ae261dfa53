//! The shard's per-type maps: canonical key bytes → one interval's aggregate,
//! built for the receive thread's lookup of every value.
//!
//! # Why not a `HashMap<MetricKey, V>`
//!
//! At high cardinality (100,000 series on one thread) nearly every value is
//! a cache miss: the table is megabytes, and the datagrams streaming through
//! the receive buffer push it out of cache between two values of the same
//! series. A `HashMap<MetricKey, V>` misses up to three times per value: its
//! control bytes, its bucket, then the key bytes behind the `Arc` that the
//! bucket points to. Profiled at W2 (docs/benchmarks.md), the lookup and the
//! key compare took more than half of the server's CPU.
//!
//! This map keeps the parts apart so that only one miss is left and that one
//! can be started early:
//!
//! - `entries`, a dense `Vec` in insertion order, holds each series' hash,
//!   its key bytes (inline up to [`INLINE`] bytes, so the compare reads the
//!   same cache lines as the value) and its value;
//! - `index`, a [`hashbrown::HashTable`] of 8-byte slots (32 bits of the
//!   hash and the entry's position), finds the entry. It is about a tenth of
//!   the entries' size (1.2 MB for 100,000 series), so it mostly stays in
//!   cache.
//!
//! [`KeyMap::candidate`] looks a hash up in the index alone and returns the
//! position of the entry that probably holds the key; the caller prefetches
//! that entry ([`KeyMap::prefetch`]) and comes back a few values later
//! ([`KeyMap::find_mut`]), when the entry is in cache. The candidate is
//! only a guess (two keys may share 32 bits of hash), so it is always
//! verified against the key, and a wrong guess falls back to the exact
//! lookup. Entries never move (the shard never deletes; the whole map is
//! taken at the end of the interval), so a position stays valid.
//!
//! The hash is computed once per value by the shard, and stored, so that
//! growing the index never reads an entry's key again.

use hashbrown::HashTable;

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

/// The part of the hash an index slot keeps: enough to tell almost every
/// two keys apart without reading their entries.
#[inline]
fn short(hash: u64) -> u32 {
    hash as u32
}

/// The hash the index is built on, from the part a slot keeps, so that the
/// index can grow from its slots alone. hashbrown takes the bucket from the
/// low bits and a 7-bit tag from the top ones: both come from the 32 bits.
#[inline]
fn index_hash(short: u32) -> u64 {
    u64::from(short) | (u64::from(short) << 32)
}

/// Canonical key bytes → `V`, for one interval. See the module doc.
#[derive(Debug)]
pub(crate) struct KeyMap<V> {
    /// `(short hash, position in entries)`.
    index: HashTable<(u32, u32)>,
    entries: Vec<Entry<V>>,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            index: HashTable::new(),
            entries: Vec::new(),
        }
    }
}

impl<V> KeyMap<V> {
    /// An empty map with room for `n` series.
    pub(crate) fn with_capacity(n: usize) -> KeyMap<V> {
        KeyMap {
            index: HashTable::with_capacity(n),
            entries: Vec::with_capacity(n),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of the entry that probably holds `hash`'s key, from the
    /// index alone; `None` when no entry has this hash (a new key, unless
    /// it is inserted before the caller comes back).
    #[inline]
    pub(crate) fn candidate(&self, hash: u64) -> Option<u32> {
        let s = short(hash);
        self.index
            .find(index_hash(s), |&(h, _)| h == s)
            .map(|&(_, at)| at)
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
        match at {
            Some(at) if self.holds(at, hash, key) => Some(&mut self.entries[at as usize].value),
            _ => self.get_mut(hash, key),
        }
    }

    /// The value of `key`, whose hash is `hash`.
    #[inline]
    pub(crate) fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut V> {
        let s = short(hash);
        let entries = &self.entries;
        let at = self
            .index
            .find(index_hash(s), |&(h, at)| {
                h == s && {
                    let e = &entries[at as usize];
                    e.hash == hash && e.key.as_bytes() == key
                }
            })
            .map(|&(_, at)| at)?;
        Some(&mut self.entries[at as usize].value)
    }

    /// Add `key`, which the map does not hold.
    pub(crate) fn insert_new(&mut self, hash: u64, key: &[u8], value: V) {
        // Past u32::MAX series a shard would hold some 300 GB; the server's
        // series limit stops far before.
        let at = u32::try_from(self.entries.len()).expect("fewer than 2^32 series in a shard");
        let s = short(hash);
        self.index
            .insert_unique(index_hash(s), (s, at), |&(h, _)| index_hash(h));
        self.entries.push(Entry {
            hash,
            key: KeyBytes::new(key),
            value,
        });
    }

    /// Every key and value, in insertion order.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = (KeyBytes, V)> {
        self.entries.into_iter().map(|e| (e.key, e.value))
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
            assert!(m.get_mut(h, k).is_none());
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
        assert_eq!(m.get_mut(a, b"colliding-a").copied(), Some(1));
        assert_eq!(m.get_mut(b, b"colliding-b").copied(), Some(2));
        let got: Vec<(Vec<u8>, u64)> = m
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        assert_eq!(got.len(), keys.len() + 2);
        assert_eq!(got[0], (keys[0].clone(), 1));
        assert_eq!(got[3].0, keys[3]);
    }

    #[test]
    fn counter_entry_is_a_cache_line() {
        assert_eq!(std::mem::size_of::<Entry<(f64, u32)>>(), 64);
        assert_eq!(std::mem::size_of::<KeyBytes>(), 40);
    }
}
