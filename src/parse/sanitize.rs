//! The reference's `sanitizeKeyName` (option `keyNameSanitize`):
//!
//! ```js
//! key.replace(/\s+/g, '_').replace(/\//g, '-').replace(/[^a-zA-Z_\-0-9\.;=]/g, '')
//! ```
//!
//! The reference runs it on the key after decoding the packet as UTF-8, where
//! each invalid sequence becomes U+FFFD. Such a character is not whitespace, so
//! it splits a whitespace run (`"a \xff b"` becomes `a__b`), and is then removed.
//!
//! Imports nothing of the crate outside `parse`.

use super::number::is_js_space;

/// Bytes the last step keeps: `[a-zA-Z_\-0-9\.;=]`, as a table (this runs
/// over every byte of every key).
static KEPT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b';' | b'=');
        i += 1;
    }
    t
};

#[inline]
fn is_kept(b: u8) -> bool {
    KEPT[usize::from(b)]
}

/// Bytes a metric name can be made of that neither sanitising nor making
/// the key canonical changes and that no tag syntax uses: the kept bytes
/// but `;` (Graphite tags). A name of these alone is its own canonical key.
static PLAIN: [bool; 256] = {
    let mut t = KEPT;
    t[b';' as usize] = false;
    t
};

/// Whether `b` is a byte of a plain name (see `PLAIN`).
#[inline]
pub fn is_plain(b: u8) -> bool {
    PLAIN[usize::from(b)]
}

/// Whether sanitising would change `key`. False for the common case, a key
/// made only of kept bytes, which can then be used as it is.
pub fn needs_sanitize(key: &[u8]) -> bool {
    !key.iter().all(|&b| is_kept(b))
}

/// Append the sanitised `key` to `out`, in one pass equivalent to the three
/// regex replacements.
pub fn sanitize_into(key: &[u8], out: &mut Vec<u8>) {
    let mut in_space = false;
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_js_space(c) {
                if !in_space {
                    out.push(b'_');
                    in_space = true;
                }
                continue;
            }
            in_space = false;
            if c == '/' {
                out.push(b'-');
            } else if let Ok(b) = u8::try_from(c) {
                if is_kept(b) {
                    out.push(b);
                }
            }
        }
        if !chunk.invalid().is_empty() {
            // The U+FFFD the reference decodes this to ends a whitespace run.
            in_space = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize() {
        // Expected values checked against the reference's regexes in node.
        let cases: &[(&[u8], &[u8])] = &[
            (b"foo.bar", b"foo.bar"),
            (b"a-b_c;d=e", b"a-b_c;d=e"),
            (b"a b", b"a_b"),
            (b"a \t\r b", b"a_b"),
            (b" a ", b"_a_"),
            (b"a/b//c", b"a-b--c"),
            (b"a!@#$%^&*()b", b"ab"),
            (b"a:b|c,d", b"abcd"),
            ("caf\u{e9}".as_bytes(), b"caf"),
            ("a\u{A0}b".as_bytes(), b"a_b"),
            ("a\u{2028}\u{3000}b".as_bytes(), b"a_b"),
            ("a\u{FEFF}b".as_bytes(), b"a_b"),
            ("a\u{1680}b\u{202F}c\u{205F}d".as_bytes(), b"a_b_c_d"),
            // Not JavaScript whitespace: removed, not replaced.
            ("a\u{85}b\u{200B}c".as_bytes(), b"abc"),
            // A non-kept character between spaces splits the run.
            ("a \u{e9} b".as_bytes(), b"a__b"),
            (b"a \xff b", b"a__b"),
            (b"a\xffb", b"ab"),
            (b"a\xe3\x80b", b"ab"),
            (b"\xf0\x9f\x98\x80x", b"x"),
            (b"!!!", b""),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            sanitize_into(input, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            let unchanged = out == *input;
            assert_eq!(needs_sanitize(input), !unchanged, "{input:?}");
        }
    }
}
