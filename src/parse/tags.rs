//! Building the canonical key (see [`crate::metric`]) of a statsd line.
//!
//! The reference appends DogStatsD tags to the name (`name;k=v;k2`) and then
//! sanitises the whole key. statsyard does the same and then canonicalises:
//! tags sorted bytewise, empty tags dropped, so that the same series always
//! has the same key whatever order the client sent its tags in.
//!
//! Every buffer is owned by a [`KeyBuilder`] and reused from line to line, so
//! once they have grown no key costs an allocation; a key that is already
//! canonical is not copied at all.
//!
//! Imports nothing of the crate outside `parse`.

use super::sanitize::{needs_sanitize, sanitize_into};

/// The tag syntaxes read from the metric name besides Graphite's `;k=v`
/// (DogStatsD `|#k:v` tags are always read). Each turns into the same
/// canonical key as the equivalent Graphite tags.
///
/// - InfluxDB: `name,k=v,k2=v2:1|c`
/// - Librato: `name#k=v,k2=v2:1|c`
/// - SignalFX: `name[k=v,k2=v2]:1|c`, also in the middle of the name
///   (`na[k=v]me` is `name;k=v`)
///
/// As in statsd_exporter, SignalFX brackets are looked for first; a name
/// with only one bracket is left as it is. Otherwise the first `,` or `#`
/// starts the tags. With a dialect off its delimiter is part of the name
/// (and the reference's sanitiser drops it), as in the reference statsd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDialects {
    /// `name,k=v`.
    pub influxdb: bool,
    /// `name#k=v`.
    pub librato: bool,
    /// `name[k=v]`.
    pub signalfx: bool,
}

/// A tag dialect name that [`TagDialects::from_names`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tag dialect {0:?} (expected \"influxdb\", \"librato\" or \"signalfx\")")]
pub struct UnknownDialect(pub String);

impl TagDialects {
    /// No dialect: names are read exactly as the reference statsd reads them.
    pub const NONE: TagDialects = TagDialects {
        influxdb: false,
        librato: false,
        signalfx: false,
    };
    /// Every dialect (the default).
    pub const ALL: TagDialects = TagDialects {
        influxdb: true,
        librato: true,
        signalfx: true,
    };

    /// The dialects named (`"influxdb"`, `"librato"`, `"signalfx"`).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<TagDialects, UnknownDialect> {
        let mut d = TagDialects::NONE;
        for name in names {
            match name.as_ref() {
                "influxdb" => d.influxdb = true,
                "librato" => d.librato = true,
                "signalfx" => d.signalfx = true,
                other => return Err(UnknownDialect(other.to_string())),
            }
        }
        Ok(d)
    }

    /// At least one dialect is on.
    #[inline]
    pub fn any(self) -> bool {
        self.influxdb || self.librato || self.signalfx
    }
}

impl Default for TagDialects {
    fn default() -> Self {
        TagDialects::ALL
    }
}

/// A name whose tags were written in one of the [`TagDialects`], split:
/// the name is `before` followed by `after`, the tags `k=v,k2=v2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialectSplit<'a> {
    /// The name up to the tags.
    pub before: &'a [u8],
    /// The rest of the name after SignalFX's `]`; empty otherwise.
    pub after: &'a [u8],
    /// The tags, comma-separated, without their delimiters.
    pub tags: &'a [u8],
}

/// Whether `name` has any dialect delimiter. This is the whole cost of the
/// dialects for a name without tags (every line on the hot path), so it is
/// written without an early exit: the compiler turns the loop into SIMD
/// compares, a few nanoseconds for a typical name.
#[inline]
fn has_delimiter(name: &[u8]) -> bool {
    name.iter().fold(false, |seen, &b| {
        seen | (b == b',') | (b == b'#') | (b == b'[') | (b == b']')
    })
}

/// Find the tags of `name` written in one of the enabled dialects.
/// `None` for a name with none, which costs one scan of the name.
#[inline]
pub fn split_dialect(name: &[u8], d: TagDialects) -> Option<DialectSplit<'_>> {
    if !has_delimiter(name) {
        return None;
    }
    if d.signalfx {
        let open = name.iter().position(|&b| b == b'[');
        let close = name.iter().position(|&b| b == b']');
        match (open, close) {
            (Some(o), Some(c)) if o < c => {
                return Some(DialectSplit {
                    before: &name[..o],
                    after: &name[c + 1..],
                    tags: &name[o + 1..c],
                })
            }
            (None, None) => {}
            // One bracket, or `]` before `[`: not tags; left as written.
            _ => return None,
        }
    }
    let i = name
        .iter()
        .position(|&b| (b == b'#' && d.librato) || (b == b',' && d.influxdb))?;
    Some(DialectSplit {
        before: &name[..i],
        after: &[],
        tags: &name[i + 1..],
    })
}

/// Reusable buffers that turn a name and its DogStatsD tags into a canonical key.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    /// The name with DogStatsD tags appended, when there are any.
    joined: Vec<u8>,
    /// Whether `joined` holds the current line's key.
    has_tags: bool,
    /// The sanitised key, when sanitising changed it (or, with sanitising
    /// off, the key with invalid UTF-8 replaced).
    clean: Vec<u8>,
    /// The canonical key, when the sanitised key was not canonical yet.
    sorted: Vec<u8>,
    /// Byte ranges of the tags while they are sorted.
    ranges: Vec<(usize, usize)>,
}

impl KeyBuilder {
    /// Buffers that will hold keys of about `capacity` bytes without growing.
    pub fn with_capacity(capacity: usize) -> Self {
        KeyBuilder {
            joined: Vec::with_capacity(capacity),
            has_tags: false,
            clean: Vec::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
            ranges: Vec::with_capacity(16),
        }
    }

    /// Start the key of a new line.
    pub fn reset(&mut self) {
        self.has_tags = false;
    }

    /// Start the key from a name given in two pieces, before tags are
    /// pushed: a SignalFX name may have its tags in the middle.
    pub fn set_name(&mut self, before: &[u8], after: &[u8]) {
        self.joined.clear();
        self.joined.extend_from_slice(before);
        self.joined.extend_from_slice(after);
        self.has_tags = true;
    }

    /// Append the tags of one DogStatsD `|#` field (without the `#`) to the
    /// key whose name is `name`. As in the reference, each comma-separated
    /// tag has its first `;` replaced by `_` and its first `:` by `=`, and an
    /// empty field adds nothing.
    pub fn push_tag_field(&mut self, name: &[u8], field: &[u8]) {
        if field.is_empty() {
            return;
        }
        if !self.has_tags {
            self.joined.clear();
            self.joined.extend_from_slice(name);
            self.has_tags = true;
        }
        for tag in field.split(|&b| b == b',') {
            self.joined.push(b';');
            let start = self.joined.len();
            self.joined.extend_from_slice(tag);
            let pushed = &mut self.joined[start..];
            if let Some(i) = pushed.iter().position(|&b| b == b';') {
                pushed[i] = b'_';
            }
            if let Some(i) = pushed.iter().position(|&b| b == b':') {
                pushed[i] = b'=';
            }
        }
    }

    /// Append one tag given as its key and value (a service check's `h:`
    /// host), as [`push_tag_field`](Self::push_tag_field) would `key:value`.
    pub fn push_tag(&mut self, name: &[u8], key: &[u8], value: &[u8]) {
        if !self.has_tags {
            self.joined.clear();
            self.joined.extend_from_slice(name);
            self.has_tags = true;
        }
        self.joined.push(b';');
        self.joined.extend_from_slice(key);
        self.joined.push(b'=');
        let start = self.joined.len();
        self.joined.extend_from_slice(value);
        if let Some(i) = self.joined[start..].iter().position(|&b| b == b';') {
            self.joined[start + i] = b'_';
        }
    }

    /// The canonical key of `name` plus the tags pushed since [`reset`](Self::reset),
    /// sanitised when `sanitize` is set. Borrows `name` itself when that is
    /// already the canonical key.
    pub fn build<'k>(&'k mut self, name: &'k [u8], sanitize: bool) -> &'k [u8] {
        self.build_sent(name, sanitize).0
    }

    /// [`build`](Self::build), and the key as the client sent it (name and
    /// tags joined, not sanitised, not sorted) when sanitising or the UTF-8
    /// repair rewrote it: what Prometheus label values keep
    /// ([`super::statsd::Handler::sent_as`]).
    pub fn build_sent<'k>(
        &'k mut self,
        name: &'k [u8],
        sanitize: bool,
    ) -> (&'k [u8], Option<&'k [u8]>) {
        let joined: &[u8] = if self.has_tags { &self.joined } else { name };
        let mut sent = None;
        let clean: &[u8] = if sanitize && needs_sanitize(joined) {
            sent = Some(joined);
            self.clean.clear();
            sanitize_into(joined, &mut self.clean);
            &self.clean
        } else if !sanitize && std::str::from_utf8(joined).is_err() {
            // The reference decodes packets as UTF-8, so every invalid
            // sequence is U+FFFD in its keys: `a\xff` and `a\xfe` are one series.
            sent = Some(joined);
            self.clean.clear();
            for chunk in joined.utf8_chunks() {
                self.clean.extend_from_slice(chunk.valid().as_bytes());
                if !chunk.invalid().is_empty() {
                    self.clean.extend_from_slice("\u{FFFD}".as_bytes());
                }
            }
            &self.clean
        } else {
            joined
        };
        if is_canonical(clean) {
            (clean, sent)
        } else {
            canonicalize_into(clean, &mut self.ranges, &mut self.sorted);
            (&self.sorted, sent)
        }
    }

    /// Total capacity of the buffers, to check that warm parsing does not grow them.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.joined.capacity()
            + self.clean.capacity()
            + self.sorted.capacity()
            + self.ranges.capacity()
    }
}

/// The name of a key: everything before the first `;`.
pub fn key_name(key: &[u8]) -> &[u8] {
    key.split(|&b| b == b';').next().unwrap_or(key)
}

/// Whether `key` has no empty tags and its tags are in bytewise order.
fn is_canonical(key: &[u8]) -> bool {
    let mut tags = key.split(|&b| b == b';').skip(1);
    let Some(mut prev) = tags.next() else {
        return true;
    };
    if prev.is_empty() {
        return false;
    }
    for tag in tags {
        if tag.is_empty() || tag < prev {
            return false;
        }
        prev = tag;
    }
    true
}

/// Write the canonical form of `key` to `out`: its name, then its non-empty
/// tags in bytewise order, each after a `;`.
fn canonicalize_into(key: &[u8], ranges: &mut Vec<(usize, usize)>, out: &mut Vec<u8>) {
    let name = key_name(key);
    ranges.clear();
    let mut start = name.len() + 1;
    while start <= key.len() {
        let end = key[start..]
            .iter()
            .position(|&b| b == b';')
            .map_or(key.len(), |i| start + i);
        if end > start {
            ranges.push((start, end));
        }
        start = end + 1;
    }
    // Equal tags are equal bytes, so an unstable sort gives the same result
    // as a stable one, and it sorts in place without allocating.
    ranges.sort_unstable_by(|a, b| key[a.0..a.1].cmp(&key[b.0..b.1]));
    out.clear();
    out.extend_from_slice(name);
    for &(s, e) in ranges.iter() {
        out.push(b';');
        out.extend_from_slice(&key[s..e]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, DogStatsD tag fields, sanitize, key)
    type Case = (&'static [u8], &'static [&'static [u8]], bool, &'static [u8]);

    #[test]
    fn canonical_keys() {
        let cases: &[Case] = &[
            (b"foo", &[], true, b"foo"),
            (b"foo;a=1;b=2", &[], true, b"foo;a=1;b=2"),
            (b"foo;b=2;a=1", &[], true, b"foo;a=1;b=2"),
            (b"foo;b;a;b", &[], true, b"foo;a;b;b"),
            (b"foo;;a;", &[], true, b"foo;a"),
            (b"foo;", &[], true, b"foo"),
            (b"foo", &[b"b:2,a:1"], true, b"foo;a=1;b=2"),
            (b"foo", &[b"a"], true, b"foo;a"),
            (b"foo", &[b""], true, b"foo"),
            (b"foo", &[b",,x,"], true, b"foo;x"),
            (b"foo;z=1", &[b"a:1"], true, b"foo;a=1;z=1"),
            (b"foo", &[b"b:1", b"a:2"], true, b"foo;a=2;b=1"),
            // First `:` to `=`, first `;` to `_`, then sanitising drops the rest.
            (b"foo", &[b"k:v:w"], true, b"foo;k=vw"),
            (b"foo", &[b"k:v:w"], false, b"foo;k=v:w"),
            (b"foo", &[b"a;b;c:d"], true, b"foo;a_b;c=d"),
            (b"foo", &[b"host:web 1"], true, b"foo;host=web_1"),
            (b"foo", &[b"!!!"], true, b"foo"),
            (b"my key/x", &[b"b:1"], true, b"my_key-x;b=1"),
            (b"my key", &[], false, b"my key"),
            (b"my key;b;a", &[], false, b"my key;a;b"),
            (b"a\xff\xfe", &[], false, "a\u{FFFD}\u{FFFD}".as_bytes()),
            (
                b"a\xe3\x80b",
                &[b"\xf0:\x80"],
                false,
                "a\u{FFFD}b;\u{FFFD}=\u{FFFD}".as_bytes(),
            ),
            // Sorting is bytewise on the final bytes.
            (b"foo", &[b"b,B,a,_,1"], true, b"foo;1;B;_;a;b"),
            (b"foo", &[b"a=2,a=10"], true, b"foo;a=10;a=2"),
        ];
        let mut kb = KeyBuilder::with_capacity(8);
        for (name, fields, sanitize, want) in cases {
            kb.reset();
            for f in *fields {
                kb.push_tag_field(name, f);
            }
            let got = kb.build(name, *sanitize);
            assert_eq!(
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(want),
                "{:?} {:?}",
                String::from_utf8_lossy(name),
                fields
            );
        }
    }

    #[test]
    fn canonical_name_is_borrowed() {
        let mut kb = KeyBuilder::with_capacity(8);
        for name in [&b"foo.bar"[..], b"foo;a=1;b=2", b"x y"] {
            kb.reset();
            let got = kb.build(name, false);
            assert_eq!(got.as_ptr(), name.as_ptr());
        }
        kb.reset();
        let name = b"foo.bar;a";
        assert_eq!(kb.build(name, true).as_ptr(), name.as_ptr());
    }

    /// (name, dialects, key), all through the same builder as DogStatsD tags.
    #[test]
    fn dialects() {
        let all = TagDialects::ALL;
        let cases: &[(&[u8], TagDialects, &[u8])] = &[
            (b"foo,b=2,a=1", all, b"foo;a=1;b=2"),
            (b"foo#b=2,a=1", all, b"foo;a=1;b=2"),
            (b"foo[b=2,a=1]", all, b"foo;a=1;b=2"),
            (b"fo[b=2,a=1]o", all, b"foo;a=1;b=2"),
            (b"foo;b=2#a=1", all, b"foo;a=1;b=2"),
            (b"foo[]", all, b"foo"),
            // The first `,` or `#` starts the tags.
            (b"foo#a=1,b=x#y", all, b"foo;a=1;b=xy"),
            // One bracket: not tags, and the sanitiser drops it.
            (b"foo[a=1", all, b"fooa=1"),
            (b"foo]a=1[", all, b"fooa=1"),
            // Dialects off: the reference's name.
            (b"foo,a=1", TagDialects::NONE, b"fooa=1"),
            (
                b"foo,a=1#b=2",
                TagDialects {
                    influxdb: false,
                    ..all
                },
                b"fooa=1;b=2",
            ),
            (
                b"foo[a=1]",
                TagDialects {
                    signalfx: false,
                    ..all
                },
                b"fooa=1",
            ),
        ];
        let mut kb = KeyBuilder::with_capacity(8);
        for (name, d, want) in cases {
            kb.reset();
            let mut base: &[u8] = name;
            if let Some(split) = split_dialect(name, *d) {
                kb.set_name(split.before, split.after);
                kb.push_tag_field(split.before, split.tags);
                base = split.before;
            }
            let got = kb.build(base, true);
            assert_eq!(
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(want),
                "{:?} {d:?}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(split_dialect(b"plain.name", all), None);
        assert_eq!(
            TagDialects::from_names(&["signalfx"]),
            Ok(TagDialects {
                signalfx: true,
                ..TagDialects::NONE
            })
        );
        assert!(TagDialects::from_names(&["dogstatsd"]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(key_name(b"foo;a"), b"foo");
        assert_eq!(key_name(b"foo"), b"foo");
        assert_eq!(key_name(b";a"), b"");
        assert_eq!(key_name(b""), b"");
    }
}
