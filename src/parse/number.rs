//! Numbers as the reference reads them: JavaScript's `Number(string)`,
//! restricted to finite decimal literals.
//!
//! The reference validates values with `!isNaN(str)` and converts them with
//! `Number(str)`, which trims JavaScript whitespace and accepts decimal
//! literals (`+5`, `.5`, `5.`, `1e3`). It also accepts hex/octal/binary
//! literals, `Infinity`, overflowing exponents and whitespace-only strings
//! (as 0); statsyard rejects those (see docs/compatibility.md).
//!
//! Imports nothing of the crate outside `parse`.

use nom::combinator::all_consuming;
use nom::number::complete::recognize_float;
use nom::Parser;

/// Whether `c` is whitespace for JavaScript (`\s` in a regex, and what
/// `String.prototype.trim` and `Number()` strip): ECMAScript WhiteSpace and
/// LineTerminator. Unlike `char::is_whitespace` it includes U+FEFF and
/// excludes U+0085.
pub fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// The first character of `b` and its length in bytes, if `b` starts with
/// valid UTF-8. Invalid bytes stand for U+FFFD, which is never whitespace,
/// so callers only need to know that they are not a character they look for.
fn first_char(b: &[u8]) -> Option<(char, usize)> {
    let valid = b.utf8_chunks().next()?.valid();
    let c = valid.chars().next()?;
    Some((c, c.len_utf8()))
}

/// The last character of `b` and its length in bytes, if `b` ends with
/// valid UTF-8.
fn last_char(b: &[u8]) -> Option<(char, usize)> {
    // A UTF-8 character is at most 4 bytes: look at the shortest tail that
    // starts on a non-continuation byte.
    let from = b.len().saturating_sub(4);
    let start = (from..b.len()).rev().find(|&i| b[i] & 0xC0 != 0x80)?;
    let s = std::str::from_utf8(&b[start..]).ok()?;
    let mut chars = s.chars();
    let c = chars.next_back()?;
    // Exactly one character in the tail, else the bytes were malformed.
    chars.next().is_none().then_some((c, c.len_utf8()))
}

/// `b` without leading and trailing JavaScript whitespace (see [`is_js_space`]).
pub fn js_trim(mut b: &[u8]) -> &[u8] {
    while let Some(&first) = b.first() {
        let len = if first.is_ascii() {
            if !is_js_space(char::from(first)) {
                break;
            }
            1
        } else {
            match first_char(b) {
                Some((c, len)) if is_js_space(c) => len,
                _ => break,
            }
        };
        b = &b[len..];
    }
    while let Some(&last) = b.last() {
        let len = if last.is_ascii() {
            if !is_js_space(char::from(last)) {
                break;
            }
            1
        } else {
            match last_char(b) {
                Some((c, len)) if is_js_space(c) => len,
                _ => break,
            }
        };
        b = &b[..b.len() - len];
    }
    b
}

/// A finite decimal number with nothing around it: `[+-]? (d+ (. d*)? | . d+) ([eE] [+-]? d+)?`,
/// which is JavaScript's StrDecimalLiteral without `Infinity`.
pub fn parse_decimal(b: &[u8]) -> Option<f64> {
    let (_, digits) = all_consuming(recognize_float::<&[u8], nom::error::Error<&[u8]>>)
        .parse(b)
        .ok()?;
    // `recognize_float` only matches ASCII, so this is valid UTF-8; std's
    // float parser is correctly rounded and accepts this whole grammar.
    let v: f64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// A value as the reference's `Number(str)` reads it, JavaScript whitespace
/// trimmed; `None` for anything that is not a finite decimal number,
/// including the empty string.
pub fn parse_js_number(b: &[u8]) -> Option<f64> {
    if let Some(v) = small_integer(b) {
        return Some(v);
    }
    parse_decimal(js_trim(b))
}

/// The fast path for what most lines carry: `-?[0-9]{1,15}` and nothing
/// else. Up to 15 digits the integer is exact in an f64, so this gives the
/// same value as the full parse without its trimming, validation and
/// UTF-8 checks.
#[inline]
fn small_integer(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    // `as` is exact here: n < 10^15 < 2^53.
    let v = n as f64;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_fast_path_agrees_with_the_full_parse() {
        for b in [
            &b"0"[..],
            b"-0",
            b"1",
            b"-1",
            b"42",
            b"007",
            b"999999999999999",
            b"-999999999999999",
            b"1234567890123456",
            b"12a",
            b"-",
            b"",
            b"1.5",
        ] {
            let fast = small_integer(b);
            let full = parse_decimal(b);
            if let Some(v) = fast {
                assert_eq!(Some(v.to_bits()), full.map(f64::to_bits), "{b:?}");
            } else {
                // Left to the full parse: longer, signed with +, or not an integer.
                assert!(
                    b.len() > 15 || !b.iter().all(u8::is_ascii_digit) || b.is_empty(),
                    "{b:?}"
                );
            }
        }
    }

    #[test]
    fn numbers() {
        let cases: &[(&[u8], Option<f64>)] = &[
            (b"1", Some(1.0)),
            (b"-1", Some(-1.0)),
            (b"+5", Some(5.0)),
            (b".5", Some(0.5)),
            (b"5.", Some(5.0)),
            (b"-.5e-3", Some(-0.0005)),
            (b"5.e3", Some(5000.0)),
            (b"1E3", Some(1000.0)),
            (b"00012", Some(12.0)),
            (b"1e-400", Some(0.0)),
            (b"0.1", Some(0.1)),
            (b" 7\t", Some(7.0)),
            ("\u{A0}8\u{3000}".as_bytes(), Some(8.0)),
            ("\u{FEFF}9\u{2028}".as_bytes(), Some(9.0)),
            (b"\x0b\x0c\r3\n", Some(3.0)),
            (b"", None),
            (b"  ", None),
            (b".", None),
            (b"-", None),
            (b"1e", None),
            (b"e3", None),
            (b".e3", None),
            (b"1.2.3", None),
            (b"1 2", None),
            (b"0x10", None),
            (b"0b1", None),
            (b"Infinity", None),
            (b"-Infinity", None),
            (b"inf", None),
            (b"NaN", None),
            (b"nan", None),
            (b"1e400", None),
            (b"-1e400", None),
            (b"1_000", None),
            (b"abc", None),
            (b"1\xff", None),
            ("\u{0085}1".as_bytes(), None),
            ("1\u{200B}".as_bytes(), None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_js_number(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(parse_js_number(b"-0").is_some_and(|v| v == 0.0 && v.is_sign_negative()));
    }

    #[test]
    fn trim() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b" \t", b""),
            (b" a b ", b"a b"),
            ("\u{A0}\u{2000}x\u{200A}\u{205F}".as_bytes(), b"x"),
            (b"\xffx\xff", b"\xffx\xff"),
            ("\u{0085}x".as_bytes(), "\u{0085}x".as_bytes()),
            ("é ".as_bytes(), "é".as_bytes()),
            (b"\xe3\x80 ", b"\xe3\x80"),
        ];
        for (input, want) in cases {
            assert_eq!(
                js_trim(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn space_set() {
        for c in [
            '\t', '\n', '\u{0B}', '\u{0C}', '\r', ' ', '\u{A0}', '\u{1680}',
        ] {
            assert!(is_js_space(c), "{c:?}");
        }
        for c in ['\u{2000}', '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}'] {
            assert!(is_js_space(c), "{c:?}");
        }
        for c in ['\u{205F}', '\u{3000}', '\u{FEFF}'] {
            assert!(is_js_space(c), "{c:?}");
        }
        for c in ['a', '_', '\u{0085}', '\u{180E}', '\u{200B}', '\u{FFFD}'] {
            assert!(!is_js_space(c), "{c:?}");
        }
    }
}
