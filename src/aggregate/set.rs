//! Sets: the distinct members seen in one interval.
//!
//! Imports nothing of the crate outside `aggregate`.

use std::borrow::Cow;

use super::FastSet;

/// The distinct members of one set series, owned.
///
/// Members are compared as the reference compares them: as JavaScript
/// strings decoded from UTF-8, so bytes that are not UTF-8 become U+FFFD
/// before comparison (two different invalid byte strings of the same shape
/// are one member, as in the reference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Members(FastSet<Box<[u8]>>);

impl Members {
    /// Add a member; allocates only when it is new.
    pub(crate) fn insert(&mut self, member: &[u8]) {
        let member: Cow<'_, [u8]> = match std::str::from_utf8(member) {
            Ok(_) => Cow::Borrowed(member),
            Err(_) => Cow::Owned(String::from_utf8_lossy(member).into_owned().into_bytes()),
        };
        if !self.0.contains(member.as_ref()) {
            self.0.insert(member.into_owned().into_boxed_slice());
        }
    }

    /// Another set's members, moved in.
    pub(crate) fn extend(&mut self, other: Members) {
        if self.0.is_empty() {
            self.0 = other.0;
        } else {
            self.0.extend(other.0);
        }
    }

    /// Every member, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.0.iter().map(|m| &m[..])
    }

    /// The number of distinct members.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Forget every member (the reference's `new set.Set()`).
    pub(crate) fn clear(&mut self) {
        // Drop the storage too: a burst of members should not pin memory forever.
        self.0 = FastSet::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_members() {
        let cases: &[(&[&[u8]], usize)] = &[
            (&[], 0),
            (&[b"a"], 1),
            (&[b"a", b"a", b"b"], 2),
            (&[b"1", b"1.0", b"01"], 3),
            // Invalid UTF-8 is compared after lossy decoding, as the reference's
            // msg.toString() does: both become "\u{FFFD}x".
            (&[b"\xffx", b"\xfex", b"\xef\xbf\xbdx"], 1),
        ];
        for (members, want) in cases {
            let mut m = Members::default();
            for member in *members {
                m.insert(member);
            }
            assert_eq!(m.len(), *want, "{members:?}");
        }
    }

    #[test]
    fn extend_and_clear() {
        let mut a = Members::default();
        a.insert(b"x");
        let mut b = Members::default();
        b.insert(b"x");
        b.insert(b"y");
        a.extend(b);
        assert_eq!(a.len(), 2);
        a.clear();
        assert_eq!(a.len(), 0);
    }
}
