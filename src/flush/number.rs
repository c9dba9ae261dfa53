//! Numbers formatted as the reference prints them: JavaScript's
//! `Number.prototype.toString` (integers without a point, shortest round-trip
//! digits otherwise, exponent form past 1e21 and below 1e-6).
//!
//! Imports nothing of the crate outside `flush`.

/// Append `v` to `out` as JavaScript would print it.
pub fn push_js_number(out: &mut String, v: f64) {
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format(v));
}

/// `v` as JavaScript would print it.
///
/// ```
/// use statsyard::flush::number::js_number;
/// assert_eq!(js_number(2.0), "2");
/// assert_eq!(js_number(0.1 + 0.2), "0.30000000000000004");
/// assert_eq!(js_number(1e21), "1e+21");
/// ```
pub fn js_number(v: f64) -> String {
    let mut s = String::new();
    push_js_number(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::js_number;

    #[test]
    fn like_javascript() {
        for (v, s) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(js_number(v), s, "{v:e}");
        }
    }
}
