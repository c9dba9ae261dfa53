//! Entries waiting for a destination, in memory: [`Outbox`], bounded in
//! bytes, dropping the oldest, and tracking how much of its front entry went
//! out, so a lost connection or request sends that entry again whole.
//!
//! Imports nothing of the crate outside `deliver`.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

/// One unit of delivery: a whole encoded flush, one repeated packet, a
/// relay batch, one HTTP request body.
#[derive(Debug, Clone)]
pub struct Entry<T = ()> {
    /// The bytes to deliver.
    pub data: Bytes,
    /// Metric lines (or points, or packets) it carries, for the counters.
    pub lines: u64,
    /// What the entry's source needs back with it (the relay: the batch's
    /// points, to reroute them when the write fails; an HTTP body: its
    /// headers). Entries replayed from the spool carry what
    /// [`super::Tag::unpack`] gives.
    pub tag: T,
}

impl Entry {
    /// An entry without a tag.
    pub fn new(data: Bytes, lines: u64) -> Self {
        Entry {
            data,
            lines,
            tag: (),
        }
    }
}

/// Entries waiting for the destination, oldest first, bounded in bytes.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    entries: VecDeque<Entry<T>>,
    bytes: usize,
    cap: usize,
    /// Bytes of the front entry already written on the current connection.
    /// Only the front can be partly written: `advance` pops every entry it
    /// completes.
    written: usize,
    /// Some bytes of the front entry went out on some connection (kept when
    /// the connection is lost), or its request was tried: with a spool, that
    /// entry is older than everything spooled and must go first.
    tried: bool,
}

impl<T> Outbox<T> {
    pub fn new(cap: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            bytes: 0,
            cap,
            written: 0,
            tried: false,
        }
    }

    /// Whether the front entry was partly written (or tried) before.
    pub fn front_tried(&self) -> bool {
        self.tried && !self.entries.is_empty()
    }

    /// Whether part of the front entry went out on the current connection:
    /// nothing else may be written before the rest of it.
    pub fn front_started(&self) -> bool {
        self.written > 0
    }

    /// Mark the front entry as tried (its request was sent).
    pub fn mark_tried(&mut self) {
        self.tried = !self.entries.is_empty();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The bound in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes held, counting the front entry whole.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn front(&self) -> Option<&Entry<T>> {
        self.entries.front()
    }

    /// Append `entry`, then drop the oldest entries while over the bound.
    /// The newest entry is always kept (a bound smaller than one flush must
    /// not stop delivery altogether), and so is a partly written front entry
    /// (dropping it would tear a line on the wire). Returns what was dropped.
    pub fn push(&mut self, entry: Entry<T>) -> Vec<Entry<T>> {
        self.push_with(entry, false)
    }

    /// [`Outbox::push`]; with `keep_tried`, a front entry that was partly
    /// written on an earlier connection is kept too (a spool takes the
    /// overflow, and that entry is older than what the spool holds).
    pub fn push_with(&mut self, entry: Entry<T>, keep_tried: bool) -> Vec<Entry<T>> {
        self.bytes += entry.data.len();
        self.entries.push_back(entry);
        let mut dropped = Vec::new();
        while self.bytes > self.cap {
            let oldest = usize::from(self.written > 0 || (keep_tried && self.tried));
            if oldest + 1 >= self.entries.len() {
                break;
            }
            // `oldest` < len - 1, so the entry exists.
            if let Some(e) = self.entries.remove(oldest) {
                self.bytes -= e.data.len();
                dropped.push(e);
                if oldest == 0 {
                    // The tried front is gone; the new front is untried.
                    self.tried = false;
                }
            }
        }
        dropped
    }

    /// The unwritten bytes, front first, as slices for one vectored write.
    /// Returns how many slices of `out` were filled.
    #[cfg(test)]
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.slices_of(usize::MAX, out)
    }

    /// [`Outbox::slices`] of the first `max_entries` entries only.
    pub fn slices_of<'a>(&'a self, max_entries: usize, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, e) in self.entries.iter().take(max_entries).enumerate() {
            if n == out.len() {
                break;
            }
            let data = if i == 0 {
                &e.data[self.written..]
            } else {
                &e.data[..]
            };
            if !data.is_empty() {
                out[n] = IoSlice::new(data);
                n += 1;
            }
        }
        n
    }

    /// Record that `n` more bytes were written; every entry this completes is
    /// removed and handed to `done`, oldest first.
    pub fn advance(&mut self, mut n: usize, mut done: impl FnMut(Entry<T>)) {
        while let Some(front) = self.entries.front() {
            let left = front.data.len() - self.written;
            if n < left {
                self.written += n;
                self.tried |= n > 0;
                return;
            }
            n -= left;
            self.written = 0;
            self.tried = false;
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.data.len();
                done(e);
            }
        }
    }

    /// Remove the front entry (delivered, or given up).
    pub fn pop(&mut self) -> Option<Entry<T>> {
        let e = self.entries.pop_front()?;
        self.bytes -= e.data.len();
        self.written = 0;
        self.tried = false;
        Some(e)
    }

    /// Start the front entry over (the connection it was going out on is gone).
    pub fn rewind(&mut self) {
        self.written = 0;
    }

    /// Remove everything.
    pub fn take_all(&mut self) -> Vec<Entry<T>> {
        self.written = 0;
        self.tried = false;
        self.bytes = 0;
        self.entries.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> Entry {
        Entry::new(Bytes::copy_from_slice(s.as_bytes()), 1)
    }

    fn contents(o: &Outbox<()>) -> Vec<String> {
        o.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }

    fn unwritten(o: &Outbox<()>) -> Vec<String> {
        let mut s = [IoSlice::new(&[]); 8];
        let n = o.slices(&mut s);
        s[..n]
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn push_drops_oldest_over_the_bound() {
        /// (cap, pushes, kept, dropped)
        type Case<'a> = (usize, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (10, &["aaaa", "bbbb"], &["aaaa", "bbbb"], &[]),
            (10, &["aaaa", "bbbb", "cccc"], &["bbbb", "cccc"], &["aaaa"]),
            (8, &["aaaa", "bbbb", "cc"], &["bbbb", "cc"], &["aaaa"]),
            // The newest is kept even alone over the bound.
            (3, &["aaaa", "bbbbbb"], &["bbbbbb"], &["aaaa"]),
            (0, &["a", "b", "c"], &["c"], &["a", "b"]),
        ];
        for (cap, pushes, kept, dropped) in cases {
            let mut o = Outbox::new(*cap);
            let mut gone = Vec::new();
            for p in *pushes {
                gone.extend(o.push(entry(p)));
            }
            let gone: Vec<String> = gone
                .iter()
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .collect();
            assert_eq!(contents(&o), *kept, "cap {cap} pushes {pushes:?}");
            assert_eq!(gone, *dropped, "cap {cap} pushes {pushes:?}");
            assert_eq!(o.bytes(), kept.iter().map(|s| s.len()).sum::<usize>());
        }
    }

    #[test]
    fn partly_written_front_is_never_dropped() {
        let mut o = Outbox::new(8);
        o.push(entry("aaaa"));
        o.advance(2, |_| panic!("nothing completes"));
        o.push(entry("bbbb"));
        let dropped = o.push(entry("cccc"));
        assert_eq!(dropped.len(), 1);
        assert_eq!(contents(&o), ["aaaa", "cccc"]);
        assert_eq!(unwritten(&o), ["aa", "cccc"]);
    }

    #[test]
    fn a_front_tried_on_a_lost_connection_stays_ahead_of_the_spool() {
        for keep_tried in [true, false] {
            let mut o = Outbox::new(4);
            o.push(entry("aaaa"));
            o.advance(2, |_| panic!("nothing completes"));
            o.rewind();
            assert!(o.front_tried());
            assert!(o.push_with(entry("bbbb"), keep_tried).len() <= 1);
            let over = o.push_with(entry("cccc"), keep_tried);
            let kept = contents(&o);
            if keep_tried {
                // Older than anything spooled: it stays, to go first.
                assert_eq!(kept, ["aaaa", "cccc"]);
                assert_eq!(&over[0].data[..], b"bbbb");
            } else {
                assert_eq!(kept, ["cccc"]);
                assert!(!o.front_tried());
            }
        }
    }

    #[test]
    fn advance_completes_entries_in_order() {
        let mut o = Outbox::new(100);
        for s in ["ab", "cde", "f"] {
            o.push(entry(s));
        }
        let mut done = Vec::new();
        o.advance(1, |e| done.push(e.data));
        assert!(done.is_empty());
        o.advance(3, |e| done.push(e.data));
        assert_eq!(done, [Bytes::from_static(b"ab")]);
        assert_eq!(unwritten(&o), ["e", "f"]);
        // A lost connection sends the partly written entry again, whole.
        o.rewind();
        assert_eq!(unwritten(&o), ["cde", "f"]);
        o.advance(4, |e| done.push(e.data));
        assert_eq!(done.len(), 3);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn slices_are_capped() {
        let mut o = Outbox::new(1000);
        for _ in 0..10 {
            o.push(entry("x"));
        }
        let mut s = [IoSlice::new(&[]); 4];
        assert_eq!(o.slices(&mut s), 4);
    }

    #[test]
    fn a_tried_request_stays_ahead_and_pop_forgets_it() {
        let mut o = Outbox::new(4);
        o.push(entry("aaaa"));
        o.mark_tried();
        let over = o.push_with(entry("bbbb"), true);
        assert!(over.is_empty(), "the newest and the tried front stay");
        assert_eq!(o.pop().map(|e| e.data), Some(Bytes::from_static(b"aaaa")));
        assert!(!o.front_tried());
        assert_eq!(o.bytes(), 4);
    }
}
