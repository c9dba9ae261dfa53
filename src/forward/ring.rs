//! Which aggregator a series goes to: rendezvous (highest random weight)
//! hashing over the aggregators' addresses. Each series scores every
//! aggregator with a hash of (aggregator, series key) and goes to the
//! highest; so adding or removing one of N aggregators moves exactly the
//! series it wins or held (about 1/N of them) and no other, whatever the
//! order the aggregators are listed or discovered in (DNS answers come in
//! any order). N is small (a global tier of a few to a few hundred
//! aggregators): scoring each is cheaper than a ring's lookup at that size,
//! and needs no virtual nodes to spread evenly.
//!
//! Every agent of a fleet must place a series on the same aggregator,
//! whatever its version: the hash is XXH3-64 (a published, frozen
//! algorithm, through the `xxhash-rust` crate) with a fixed seed, never a
//! hasher whose output may change between releases (std's SipHash keys,
//! foldhash). `fixed_vectors_pin_placement` pins it: a change that fails
//! that test moves series between aggregators in a mixed-version fleet.
//!
//! A leaf: pure functions over keys and names.

/// The seed of every hash: fixed, so agents agree on placement.
const SEED: u64 = 0x5747_7973_7461_7473;

/// The aggregators a series may go to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring {
    /// Name (address) and its hash, sorted by name so that equal sets are
    /// equal rings.
    nodes: Vec<(String, u64)>,
}

/// XXH3-64 of `bytes` with [`SEED`]: specified, the same on every version
/// and platform.
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, SEED)
}

/// A 64-bit mix of two hashes (splitmix64's finaliser): the score of a
/// node for a series.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Ring {
    /// A ring of these aggregators (duplicates count once).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Ring {
        let mut nodes: Vec<(String, u64)> = names
            .into_iter()
            .map(|n| {
                let n = n.into();
                let h = hash(n.as_bytes());
                (n, h)
            })
            .collect();
        nodes.sort();
        nodes.dedup_by(|a, b| a.0 == b.0);
        Ring { nodes }
    }

    /// Its aggregators, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The index (in [`Ring::names`] order) of the aggregator `key` goes
    /// to, skipping those `skip` says are out; `None` when none is left.
    pub fn place(&self, key: &[u8], skip: impl Fn(usize) -> bool) -> Option<usize> {
        let k = hash(key);
        let mut best: Option<(u64, usize)> = None;
        for (i, (_, h)) in self.nodes.iter().enumerate() {
            if skip(i) {
                continue;
            }
            let score = mix(*h, k);
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The name of the aggregator `key` goes to.
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        self.place(key, |_| false).map(|i| self.nodes[i].0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("svc{}.host{}.req;env=prod;k={i}", i % 13, i % 101).into_bytes())
            .collect()
    }

    #[test]
    fn series_spread_evenly_and_membership_changes_move_about_one_nth() {
        let keys = keys(100_000);
        let three = Ring::new(["10.0.0.1:8190", "10.0.0.2:8190", "10.0.0.3:8190"]);
        let mut per = std::collections::HashMap::new();
        for k in &keys {
            *per.entry(three.owner(k).unwrap().to_string())
                .or_insert(0usize) += 1;
        }
        for (n, c) in &per {
            // 33,333 each, within 2%.
            assert!((32_666..=34_000).contains(c), "{n}: {c}");
        }
        // A fourth joins: it takes about a quarter, and every series that
        // moved moved to it.
        let four = Ring::new([
            "10.0.0.4:8190",
            "10.0.0.1:8190",
            "10.0.0.2:8190",
            "10.0.0.3:8190",
        ]);
        let mut moved = 0;
        for k in &keys {
            let (a, b) = (three.owner(k).unwrap(), four.owner(k).unwrap());
            if a != b {
                assert_eq!(b, "10.0.0.4:8190");
                moved += 1;
            }
        }
        assert!((24_000..=26_000).contains(&moved), "{moved} moved");
        // The figures docs/scale-out.md quotes (`--nocapture`).
        println!("3 aggregators: {per:?}; a fourth joins: {moved} of 100000 move, all to it");
        // One leaves: only its series move.
        let two = Ring::new(["10.0.0.1:8190", "10.0.0.3:8190"]);
        let mut moved = 0;
        for k in &keys {
            let (a, b) = (three.owner(k).unwrap(), two.owner(k).unwrap());
            if a != b {
                assert_eq!(a, "10.0.0.2:8190");
                moved += 1;
            }
        }
        assert_eq!(moved, per["10.0.0.2:8190"]);
        println!("one of 3 leaves: {moved} of 100000 move, all of them its own");
    }

    #[test]
    fn fixed_vectors_pin_placement() {
        // XXH3-64's own test vector (empty input, seed 0), so the crate is
        // the specified algorithm.
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(hash(b"api.requests"), 3_928_717_264_551_970_143);
        let ring = Ring::new(["10.0.0.1:8190", "10.0.0.2:8190", "10.0.0.3:8190"]);
        let got: Vec<&str> = [
            &b"api.requests"[..],
            b"api.latency;env=prod;host=a",
            b"db.queries;shard=7",
            b"users.online",
            b"checkout.errors;region=eu",
            b"",
        ]
        .iter()
        .map(|k| ring.owner(k).unwrap())
        .collect();
        assert_eq!(
            got, PINNED,
            "placement changed: agents of different versions would disagree"
        );
    }

    /// Where [`fixed_vectors_pin_placement`]'s keys go; never edit.
    const PINNED: [&str; 6] = [
        "10.0.0.1:8190",
        "10.0.0.3:8190",
        "10.0.0.2:8190",
        "10.0.0.3:8190",
        "10.0.0.1:8190",
        "10.0.0.2:8190",
    ];

    #[test]
    fn order_and_duplicates_do_not_matter_and_skipping_picks_the_next() {
        let a = Ring::new(["b:1", "a:1", "c:1", "a:1"]);
        let b = Ring::new(["c:1", "b:1", "a:1"]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        for k in keys(1000) {
            let first = a.place(&k, |_| false).unwrap();
            let second = a.place(&k, |i| i == first).unwrap();
            assert_ne!(first, second);
            // The next choice is what a ring without the first would pick.
            let names: Vec<&str> = a
                .names()
                .filter(|n| *n != a.names().nth(first).unwrap())
                .collect();
            let without = Ring::new(names);
            assert_eq!(without.owner(&k), a.names().nth(second));
        }
        assert_eq!(Ring::default().owner(b"x"), None);
    }
}
