//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! names, label values, numbers, `# HELP` and `# TYPE` lines. The one
//! writer behind `/metrics`: the exporter's client series
//! ([`super::exporter`]) and statsyard's own ([`crate::stats::render`]).
//! Why not the `prometheus` crate's encoder: docs/architecture.md
//! ("The Prometheus renderer") gives the figures. A leaf.

/// A metric or label name escaped as statsd_exporter escapes it: bytes
/// outside `[A-Za-z0-9_]` become `_` (a `--` run becomes one `_`), and a
/// leading digit gets a `_` in front.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    let mut prev = '\0';
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !(c == '-' && prev == '-') {
            out.push('_');
        }
        prev = c;
    }
    out
}

/// Somewhere exposition text goes: the cached rendering (bytes) or the
/// self-metrics (a String).
pub trait Out {
    fn put(&mut self, s: &str);
}

impl Out for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
}

/// Append `v` as the exposition format writes floats.
pub fn push_number(s: &mut impl Out, v: f64) {
    if v.is_nan() {
        s.put("NaN");
    } else if v.is_infinite() {
        s.put(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        s.put(ryu_js::Buffer::new().format(v));
    }
}

/// Append `text` with `\` and newlines escaped, and `"` too if `quote`.
/// Copies unescaped runs whole: label values rarely need escaping.
pub fn push_escaped(s: &mut impl Out, text: &str, quote: bool) {
    if !text
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        s.put(text);
        return;
    }
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let esc = match c {
            '\\' => "\\\\",
            '\n' => "\\n",
            '"' if quote => "\\\"",
            _ => continue,
        };
        s.put(&text[start..i]);
        s.put(esc);
        start = i + c.len_utf8();
    }
    s.put(&text[start..]);
}

/// Append `{a="1",b="2",extra="x"}` (nothing if there are no labels).
pub fn push_labels(
    s: &mut impl Out,
    names: &[Box<str>],
    values: &[Box<str>],
    extra: Option<(&str, f64)>,
) {
    if names.is_empty() && extra.is_none() {
        return;
    }
    s.put("{");
    let mut first = true;
    for (k, v) in names.iter().zip(values) {
        if !first {
            s.put(",");
        }
        first = false;
        s.put(k);
        s.put("=\"");
        push_escaped(s, v, true);
        s.put("\"");
    }
    if let Some((k, v)) = extra {
        if !first {
            s.put(",");
        }
        s.put(k);
        s.put("=\"");
        push_number(s, v);
        s.put("\"");
    }
    s.put("}");
}

/// Append the `# HELP` line: `\` and newlines escaped.
pub fn push_help(s: &mut impl Out, name: &str, help: &str) {
    s.put("# HELP ");
    s.put(name);
    s.put(" ");
    push_escaped(s, help, false);
    s.put("\n");
}

pub fn push_sample(
    s: &mut impl Out,
    name: &str,
    suffix: &str,
    names: &[Box<str>],
    values: &[Box<str>],
    extra: Option<(&str, f64)>,
    v: f64,
) {
    s.put(name);
    s.put(suffix);
    push_labels(s, names, values, extra);
    s.put(" ");
    push_number(s, v);
    s.put("\n");
}

/// Append the `# HELP` and `# TYPE` lines of a family.
pub fn push_header(s: &mut impl Out, name: &str, kind: &str, help: &str) {
    push_help(s, name, help);
    s.put("# TYPE ");
    s.put(name);
    s.put(" ");
    s.put(kind);
    s.put("\n");
}
