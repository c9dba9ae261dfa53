//! The JavaScript a real `config.js` computes its values with, evaluated
//! before the file is read as JSON5 data ([`super::from_str`]).
//!
//! The reference `eval`s the file, so configs in the wild write
//! `graphite: { globalSuffix: require('os').hostname() }`,
//! `graphiteHost: process.env.GRAPHITE_HOST || 'localhost'` or
//! `prefixStats: 'statsd.' + process.env.POD`. statsyard does not run
//! JavaScript; it evaluates these forms, and only these:
//!
//! ```text
//! expr    = or
//! or      = concat *("||" concat)       ; the first truthy operand, else the last
//! concat  = primary *("+" primary)      ; strings only: one side must be a string
//! primary = string / number / true / false / null
//!         / "require('os').hostname()"  ; the host name, as Node's os.hostname()
//!         / "process.env." NAME / "process.env['" NAME "']"   ; a string, or undefined
//!         / "parseInt(" expr ["," number] ")" / "Number(" expr ")"
//!         / "(" expr ")"
//! ```
//!
//! Each value of the object that is such an expression (and not a plain
//! literal) is replaced in the text by the JSON literal of its result; a key
//! whose value is `undefined` (an unset variable) is then left out, as the
//! reference would not see it. Anything else (a value that only starts like
//! one of these, arithmetic on numbers, other functions, variables) is left
//! as it is, so that the JSON5 reader refuses it with the line and column, as
//! before.
//!
//! Imports, besides `config` itself: `flush`, `parse`, `sys`.

use serde_json::Value;

/// What a text holds after its expressions were evaluated.
pub struct Evaluated {
    /// The text with every evaluated expression replaced by a JSON literal;
    /// `undefined` is [`UNDEFINED`].
    pub text: String,
    /// Whether [`UNDEFINED`] was written (so the parsed value must be pruned).
    pub undefined: bool,
}

/// Stands for JavaScript's `undefined` in the rewritten text: a string no
/// config value holds (it starts with a NUL).
pub const UNDEFINED: &str = "\u{0}statsyard:undefined\u{0}";

/// Where the process environment and the host name come from (the tests
/// give their own).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn hostname(&self) -> String;
}

/// The real environment of the process.
pub struct Process;

impl Env for Process {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn hostname(&self) -> String {
        hostname()
    }
}

/// The host name, as Node's `os.hostname()` returns it.
pub fn hostname() -> String {
    crate::sys::hostname()
}

/// Evaluate the expressions of `text` (a whole `config.js`).
pub fn evaluate(text: &str, env: &dyn Env) -> Evaluated {
    let tokens = tokens(text);
    let mut w = Walker {
        text,
        tokens: &tokens,
        at: 0,
        env,
        edits: Vec::new(),
    };
    // A structure the walker does not follow is left to the JSON5 reader,
    // with whatever was evaluated before it.
    w.skip_to_value_start();
    let _ = w.value();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut undefined = false;
    for (start, end, literal) in &w.edits {
        out.push_str(&text[last..*start]);
        out.push_str(literal);
        undefined |= literal == &json_string(UNDEFINED);
        // Keep the line numbers of everything after it.
        for _ in text[*start..*end].matches('\n') {
            out.push('\n');
        }
        last = *end;
    }
    out.push_str(&text[last..]);
    Evaluated {
        text: out,
        undefined,
    }
}

/// Leave out every object entry whose value is [`UNDEFINED`]; in arrays it
/// becomes `null`, as `JSON.stringify` writes it.
pub fn prune_undefined(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| v.as_str() != Some(UNDEFINED));
            m.values_mut().for_each(prune_undefined);
        }
        Value::Array(a) => {
            for e in a.iter_mut() {
                if e.as_str() == Some(UNDEFINED) {
                    *e = Value::Null;
                } else {
                    prune_undefined(e);
                }
            }
        }
        _ => {}
    }
}

fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A quoted string (either quote), escapes included.
    Str,
    /// A number as JSON5 writes it (`0x1f`, `.5`, `+1`, `Infinity`...).
    Num,
    /// An identifier or keyword.
    Ident,
    /// One punctuation character, or `||`.
    Punct,
}

/// A token: its kind and byte range.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Tok,
    start: usize,
    end: usize,
}

/// The tokens of `text`, without whitespace and comments. A character the
/// tokenizer does not know ends the list: the walker stops there.
fn tokens(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = match text[i + 2..].find("*/") {
                    Some(end) => i + 2 + end + 2,
                    None => b.len(),
                };
                continue;
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                Tok::Str
            }
            b'|' if b.get(i + 1) == Some(&b'|') => {
                i += 2;
                Tok::Punct
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    // An exponent's sign belongs to the number.
                    if matches!(b[i], b'e' | b'E')
                        && matches!(b.get(i + 1), Some(b'+' | b'-'))
                        && !text[start..i].starts_with("0x")
                    {
                        i += 1;
                    }
                    i += 1;
                }
                Tok::Num
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                Tok::Ident
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            c if c.is_ascii_punctuation() => {
                i += 1;
                Tok::Punct
            }
            // Non-ASCII outside a string (JSON5 allows Unicode identifiers
            // and spaces): leave the rest to the JSON5 reader.
            _ => break,
        };
        out.push(Token {
            kind,
            start,
            end: i,
        });
    }
    out
}

/// A JavaScript value an expression can have.
#[derive(Debug, Clone, PartialEq)]
enum Js {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Undefined,
}

impl Js {
    fn truthy(&self) -> bool {
        match self {
            Js::Str(s) => !s.is_empty(),
            Js::Num(n) => *n != 0.0 && !n.is_nan(),
            Js::Bool(b) => *b,
            Js::Null | Js::Undefined => false,
        }
    }

    /// `String(v)`.
    fn to_js_string(&self) -> String {
        match self {
            Js::Str(s) => s.clone(),
            Js::Num(n) => crate::flush::number::js_number(*n),
            Js::Bool(b) => b.to_string(),
            Js::Null => "null".into(),
            Js::Undefined => "undefined".into(),
        }
    }

    /// `Number(v)`.
    fn to_number(&self) -> f64 {
        match self {
            Js::Num(n) => *n,
            Js::Bool(b) => f64::from(u8::from(*b)),
            Js::Null => 0.0,
            Js::Undefined => f64::NAN,
            Js::Str(s) => {
                let t = s.trim();
                if t.is_empty() {
                    0.0
                } else {
                    crate::parse::number::parse_js_number(t.as_bytes()).unwrap_or(f64::NAN)
                }
            }
        }
    }

    /// The JSON5 literal that stands for it in the rewritten text.
    fn literal(&self) -> String {
        match self {
            Js::Str(s) => json_string(s),
            Js::Num(n) if n.is_nan() => "NaN".into(),
            Js::Num(n) if n.is_infinite() => if *n > 0.0 { "Infinity" } else { "-Infinity" }.into(),
            Js::Num(n) => crate::flush::number::js_number(*n),
            Js::Bool(b) => b.to_string(),
            Js::Null => "null".into(),
            Js::Undefined => json_string(UNDEFINED),
        }
    }
}

/// `parseInt(s, radix)`: the leading integer of the trimmed string.
fn parse_int(s: &str, radix: u32) -> f64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, t) = match (radix, t.get(..2)) {
        (0 | 16, Some("0x" | "0X")) => (16, &t[2..]),
        (0, _) => (10, t),
        (r, _) => (r, t),
    };
    let digits: &str = &t[..t
        .char_indices()
        .find(|(_, c)| !c.is_digit(radix))
        .map_or(t.len(), |(i, _)| i)];
    if digits.is_empty() {
        return f64::NAN;
    }
    let v = digits.chars().fold(0.0, |acc, c| {
        acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))
    });
    if neg {
        -v
    } else {
        v
    }
}

struct Walker<'t> {
    text: &'t str,
    tokens: &'t [Token],
    at: usize,
    env: &'t dyn Env,
    /// (start, end, literal): byte ranges to replace, in order.
    edits: Vec<(usize, usize, String)>,
}

/// The walker met something it does not follow.
struct Lost;

impl Walker<'_> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.at).copied()
    }

    fn src(&self, t: Token) -> &str {
        &self.text[t.start..t.end]
    }

    fn is(&self, s: &str) -> bool {
        self.peek().is_some_and(|t| self.src(t) == s)
    }

    fn eat(&mut self, s: &str) -> Result<(), Lost> {
        if self.is(s) {
            self.at += 1;
            Ok(())
        } else {
            Err(Lost)
        }
    }

    /// The file may start with `(`s (a wrapped expression): step over them.
    fn skip_to_value_start(&mut self) {
        while self.is("(") {
            self.at += 1;
        }
    }

    /// One value: an object, an array, or a literal or expression.
    fn value(&mut self) -> Result<(), Lost> {
        if self.is("{") {
            self.at += 1;
            while !self.is("}") {
                // A key: an identifier, a string or a number.
                let key = self.peek().ok_or(Lost)?;
                if key.kind == Tok::Punct {
                    return Err(Lost);
                }
                self.at += 1;
                self.eat(":")?;
                self.value()?;
                if !self.is("}") {
                    self.eat(",")?;
                }
            }
            self.at += 1;
            return Ok(());
        }
        if self.is("[") {
            self.at += 1;
            while !self.is("]") {
                self.value()?;
                if !self.is("]") {
                    self.eat(",")?;
                }
            }
            self.at += 1;
            return Ok(());
        }
        self.scalar()
    }

    /// A literal, left as it is, or an expression, evaluated and replaced.
    fn scalar(&mut self) -> Result<(), Lost> {
        let first = self.at;
        // The value's tokens run to the `,`, `}` or `]` that ends it.
        let mut depth = 0usize;
        let mut end = first;
        while let Some(t) = self.tokens.get(end) {
            match self.src(*t) {
                "(" | "[" => depth += 1,
                ")" | "]" if depth > 0 => depth -= 1,
                "," | "}" | "]" | ")" if depth == 0 => break,
                // An object in a value: not a form that is evaluated.
                "{" => return Err(Lost),
                _ => {}
            }
            end += 1;
        }
        if end == first {
            return Err(Lost);
        }
        self.at = end;
        if self.is_literal(first, end) {
            return Ok(());
        }
        let mut e = Expr {
            w: self,
            at: first,
            end,
        };
        let Some(v) = e.or().filter(|_| e.at == end) else {
            // Not a form statsyard evaluates: the JSON5 reader will say so.
            return Ok(());
        };
        let (start, stop) = (self.tokens[first].start, self.tokens[end - 1].end);
        self.edits.push((start, stop, v.literal()));
        Ok(())
    }

    /// Whether tokens `from..to` are one JSON5 literal (a sign may precede a number).
    fn is_literal(&self, from: usize, to: usize) -> bool {
        let toks = &self.tokens[from..to];
        let single = |t: &Token| match t.kind {
            Tok::Str | Tok::Num => true,
            Tok::Ident => matches!(self.src(*t), "true" | "false" | "null" | "Infinity" | "NaN"),
            Tok::Punct => false,
        };
        match toks {
            [t] => single(t),
            [sign, t] => matches!(self.src(*sign), "+" | "-") && single(t) && t.kind != Tok::Str,
            _ => false,
        }
    }
}

/// The evaluator over one value's tokens.
struct Expr<'w, 't> {
    w: &'w Walker<'t>,
    at: usize,
    end: usize,
}

impl Expr<'_, '_> {
    fn peek(&self) -> Option<Token> {
        (self.at < self.end).then(|| self.w.tokens[self.at])
    }

    fn is(&self, s: &str) -> bool {
        self.peek().is_some_and(|t| self.w.src(t) == s)
    }

    fn eat(&mut self, s: &str) -> Option<()> {
        self.is(s).then(|| self.at += 1)
    }

    /// `concat *("||" concat)`.
    fn or(&mut self) -> Option<Js> {
        let mut v = self.concat()?;
        while self.eat("||").is_some() {
            let rhs = self.concat()?;
            if !v.truthy() {
                v = rhs;
            }
        }
        Some(v)
    }

    /// `primary *("+" primary)`, where every `+` joins strings.
    fn concat(&mut self) -> Option<Js> {
        let mut v = self.primary()?;
        while self.eat("+").is_some() {
            let rhs = self.primary()?;
            // Arithmetic is not supported: one side must be a string.
            if !matches!(v, Js::Str(_)) && !matches!(rhs, Js::Str(_)) {
                return None;
            }
            v = Js::Str(v.to_js_string() + &rhs.to_js_string());
        }
        Some(v)
    }

    fn primary(&mut self) -> Option<Js> {
        let t = self.peek()?;
        let src = self.w.src(t);
        match t.kind {
            Tok::Str => {
                self.at += 1;
                json5::from_str::<String>(src).ok().map(Js::Str)
            }
            Tok::Num => {
                self.at += 1;
                json5::from_str::<f64>(src).ok().map(Js::Num)
            }
            Tok::Punct if src == "(" => {
                self.at += 1;
                let v = self.or()?;
                self.eat(")")?;
                Some(v)
            }
            Tok::Punct => None,
            Tok::Ident => {
                self.at += 1;
                match src {
                    "true" => Some(Js::Bool(true)),
                    "false" => Some(Js::Bool(false)),
                    "null" => Some(Js::Null),
                    "require" => self.require_os_hostname(),
                    "process" => self.process_env(),
                    "parseInt" => {
                        self.eat("(")?;
                        let v = self.or()?;
                        let radix = if self.eat(",").is_some() {
                            let r = self.or()?.to_number();
                            if !(r == 0.0 || (2.0..=36.0).contains(&r)) || r.fract() != 0.0 {
                                return None;
                            }
                            r as u32
                        } else {
                            0
                        };
                        self.eat(")")?;
                        Some(Js::Num(parse_int(&v.to_js_string(), radix)))
                    }
                    "Number" => {
                        self.eat("(")?;
                        let v = self.or()?;
                        self.eat(")")?;
                        Some(Js::Num(v.to_number()))
                    }
                    _ => None,
                }
            }
        }
    }

    /// `('os').hostname()` after `require`.
    fn require_os_hostname(&mut self) -> Option<Js> {
        self.eat("(")?;
        let module = self.peek().filter(|t| t.kind == Tok::Str)?;
        if json5::from_str::<String>(self.w.src(module)).ok()? != "os" {
            return None;
        }
        self.at += 1;
        for p in [")", ".", "hostname", "(", ")"] {
            self.eat(p)?;
        }
        Some(Js::Str(self.w.env.hostname()))
    }

    /// `.env.NAME` or `.env['NAME']` after `process`.
    fn process_env(&mut self) -> Option<Js> {
        self.eat(".")?;
        self.eat("env")?;
        let name = if self.eat(".").is_some() {
            let t = self.peek().filter(|t| t.kind == Tok::Ident)?;
            self.at += 1;
            self.w.src(t).to_string()
        } else {
            self.eat("[")?;
            let t = self.peek().filter(|t| t.kind == Tok::Str)?;
            self.at += 1;
            self.eat("]")?;
            json5::from_str::<String>(self.w.src(t)).ok()?
        };
        Some(self.w.env.var(&name).map_or(Js::Undefined, Js::Str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl Env for Fake {
        fn var(&self, name: &str) -> Option<String> {
            match name {
                "GRAPHITE_HOST" => Some("carbon.internal".into()),
                "PORT" => Some("9125".into()),
                "EMPTY" => Some(String::new()),
                _ => None,
            }
        }
        fn hostname(&self) -> String {
            "web-1.example.com".into()
        }
    }

    fn eval(text: &str) -> String {
        evaluate(text, &Fake).text
    }

    #[test]
    fn forms() {
        let cases: &[(&str, &str)] = &[
            (
                "{a: require('os').hostname()}",
                r#"{a: "web-1.example.com"}"#,
            ),
            (
                "{a: require(\"os\") . hostname ( )}",
                r#"{a: "web-1.example.com"}"#,
            ),
            (
                "{a: process.env.GRAPHITE_HOST}",
                r#"{a: "carbon.internal"}"#,
            ),
            ("{a: process.env['PORT']}", r#"{a: "9125"}"#),
            ("{a: process.env[\"PORT\"]}", r#"{a: "9125"}"#),
            (
                "{a: process.env.NOPE || 'localhost'}",
                r#"{a: "localhost"}"#,
            ),
            ("{a: process.env.EMPTY || 'x' || 'y'}", r#"{a: "x"}"#),
            (
                "{a: process.env.GRAPHITE_HOST || 'localhost'}",
                r#"{a: "carbon.internal"}"#,
            ),
            (
                "{a: 'stats.' + require('os').hostname()}",
                r#"{a: "stats.web-1.example.com"}"#,
            ),
            ("{a: 'a' + 1 + 'b'}", r#"{a: "a1b"}"#),
            ("{a: 'x' + process.env.NOPE}", r#"{a: "xundefined"}"#),
            ("{a: ('a' + 'b')}", r#"{a: "ab"}"#),
            ("{a: parseInt(process.env.PORT) || 8125}", "{a: 9125}"),
            ("{a: parseInt(process.env.NOPE, 10) || 8125}", "{a: 8125}"),
            ("{a: Number(process.env.PORT)}", "{a: 9125}"),
            ("{a: Number(process.env.NOPE)}", "{a: NaN}"),
            ("{a: parseInt('0x1f')}", "{a: 31}"),
            ("{a: parseInt(' -12px')}", "{a: -12}"),
            (
                "{a: process.env.NOPE}",
                "{a: \"\\u0000statsyard:undefined\\u0000\"}",
            ),
            // Nested, in arrays, multi-line (line numbers kept).
            (
                "{g: {h: [process.env.PORT, 'x' +\n 'y']}}",
                "{g: {h: [\"9125\", \"xy\"\n]}}",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(eval(text), *want, "{text}");
        }
    }

    #[test]
    fn literals_and_everything_else_are_left_alone() {
        for text in [
            "{a: 1, b: -2, c: +.5, d: 'x', e: \"y\", f: true, g: null, h: [1, {i: 0x10}], j: Infinity}",
            "({ a: 1 });",
            "{a: 8125 + 1}",
            "{a: require('fs').hostname()}",
            "{a: require('os').hostname().split('.')[0]}",
            "{a: process.env}",
            "{a: process.argv[2]}",
            "{a: os.hostname()}",
            "{a: `x${1}`}",
            "{a: 'x' - 1}",
            "{a: parseInt('1', 99)}",
            "{a: 0660}",
            "{a: 1",
            "",
            "{a: 'unterminated",
        ] {
            assert_eq!(eval(text), text, "{text}");
        }
    }

    #[test]
    fn undefined_entries_are_left_out() {
        let e = evaluate("{a: process.env.NOPE, b: [process.env.NOPE], c: 1}", &Fake);
        assert!(e.undefined);
        let mut v: Value = json5::from_str(&e.text).unwrap();
        prune_undefined(&mut v);
        assert_eq!(v, serde_json::json!({"b": [null], "c": 1}));
    }

    #[test]
    fn the_real_host_name() {
        assert!(!hostname().is_empty());
    }

    /// Token soup from the forms' own pieces never panics, and what it
    /// leaves is read or refused by the whole reader.
    #[test]
    fn token_soup_never_panics() {
        const PIECES: &[&str] = &[
            "{", "}", "[", "]", "(", ")", ":", ",", "+", "||", ".", "'x'", "\"y\"", "'", "1", "-",
            "0x1f", "1e+3", "a", "require", "'os'", "hostname", "process", "env", "PORT",
            "parseInt", "Number", "null", "true", "//c\n", "/*", "*/", "\\", " ", "\n",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..20_000 {
            let n = next() % 24;
            let text: String = (0..n).map(|_| PIECES[next() % PIECES.len()]).collect();
            let e = evaluate(&text, &Fake);
            let _ = super::super::from_str(&text, "config.js");
            assert!(e.text.len() < text.len() + 64 * n + 64, "{text:?}");
        }
    }
}
