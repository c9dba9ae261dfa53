//! carbon's pickle protocol: frames of a 4-byte big-endian length followed
//! by a pickled list of `(path, (timestamp, value))`, read as carbon 1.1.7's
//! `MetricPickleReceiver` reads them (`carbon/protocols.py`).
//!
//! What carbon does, and what this module does about it:
//!
//! - Framing is Twisted's `Int32StringReceiver` with `MAX_LENGTH =
//!   PICKLE_RECEIVER_MAX_LENGTH` (1 MiB by default): a longer frame closes the
//!   connection. [`next_frame`] returns [`PickleError::FrameTooLarge`] so the
//!   listener can close and count it.
//! - The payload is decoded with carbon's `SafeUnpickler`, which refuses any
//!   global. statsyard decodes with serde-pickle into plain values: nothing
//!   is ever executed or imported, and an unknown global (`os.system`, any
//!   class) is an error for the whole frame. serde-pickle maps a handful of
//!   builtins (`set`, `frozenset`, `list`, `bytearray`, `int`,
//!   `_codecs.encode`) to data; such values are never a valid point, so the
//!   entry holding them is skipped. Protocols 0 to 5 are read.
//! - A payload that does not unpickle, or is not a list or tuple, drops the
//!   frame ([`PickleError`]). carbon logs and ignores such frames.
//! - Each entry is unpacked as `(metric, (timestamp, value))`; tuples and
//!   lists of two are both accepted, as Python's unpacking accepts any
//!   two-item sequence. An entry that does not unpack is skipped
//!   ([`EntryError::NotAPair`], [`EntryError::BadDatapoint`]). Several points
//!   for one path are several entries: carbon has no
//!   `(path, [(ts, v), ...])` form (it would fail `float()` and be skipped).
//! - Timestamp and value go through Python's `float()`: ints of any size,
//!   floats, bools, and numeric strings or bytes (whitespace around them
//!   allowed) are accepted; anything else skips the entry
//!   ([`EntryError::BadNumber`]).
//! - The path must be a string. carbon crashes the connection on a bytes
//!   path (protocol 3+ `bytes`); statsyard accepts bytes that are valid
//!   UTF-8 and skips the rest ([`EntryError::BadName`]).
//! - Then the same checks as a plaintext line ([`super::carbon`]): NaN
//!   values dropped, `-1` is "now", and the configurable `allow_inf` and
//!   `name_check` ([`EntryError::Rejected`]).
//! - Before serde-pickle decodes a payload, an opcode pre-walk simulates
//!   its stack and memo by shape and size only and refuses what would crash
//!   or exhaust the process rather than merely fail: nesting deeper than
//!   [`MAX_NESTING`] ([`PickleError::TooDeep`]; serde-pickle recurses once
//!   per level), decoding to more than [`MAX_EXPANSION`] times the payload
//!   plus [`EXPANSION_SLACK`] ([`PickleError::TooLarge`]; memo references
//!   and DUP copy whole values, and serde-pickle gives every MARK a
//!   128-value stack), and floats in a set or a dict key
//!   ([`PickleError::Unorderable`]; NaN breaks the ordering serde-pickle
//!   sorts them by). carbon frames nest 3 deep and decode to about 10 times
//!   their size. The walk also rewrites the small MARK-built tuples of
//!   protocols 0 and 1 (and of serde-pickle's own writer, which statsyard's
//!   sinks use) as TUPLE1..3, since serde-pickle would give each one the
//!   128-value capacity of a MARK's stack: 8 KiB a point. Ints longer than
//!   4300 decimal digits (Python's `int_max_str_digits`), which would take
//!   seconds to convert to or from decimal, are refused too.
//!
//! Imports nothing of the crate outside `parse`.

use serde_pickle::Value;

use super::carbon::{
    check_name, check_value, py_float, resolve_timestamp, CarbonError, CarbonLineOptions, Timestamp,
};

/// carbon's default `PICKLE_RECEIVER_MAX_LENGTH`: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Why a pickle frame was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The length prefix announces more than the configured maximum; the
    /// connection should be closed (carbon does).
    #[error("pickle frame of {len} bytes is over the {max} byte limit")]
    FrameTooLarge {
        /// The announced payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The payload is not a pickle serde-pickle can read data-only
    /// (truncated, corrupt, or referring to a global such as a class).
    #[error("invalid pickle: {0}")]
    Decode(#[from] serde_pickle::Error),
    /// The pickle holds something other than a list or tuple of points.
    #[error("pickle payload is not a list of points")]
    NotAList,
    /// Lists, tuples, dicts or sets nest deeper than [`MAX_NESTING`] (or a
    /// container holds itself).
    #[error("pickle nests deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// Decoding would take more than [`MAX_EXPANSION`] times the payload's
    /// size plus [`EXPANSION_SLACK`] (memo references and DUPs expand).
    #[error(
        "pickle would expand past {MAX_EXPANSION} times its size plus {EXPANSION_SLACK} bytes"
    )]
    TooLarge,
    /// A float in a set or frozenset, or in a dict key, which serde-pickle
    /// cannot order reliably (NaN).
    #[error("pickle has a float in a set or dict key")]
    Unorderable,
}

/// Why one entry of a frame was skipped (the rest of the frame is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The entry is not a two-item `(path, datapoint)` sequence.
    #[error("entry is not a (path, (timestamp, value)) pair")]
    NotAPair,
    /// The datapoint is not a two-item `(timestamp, value)` sequence.
    #[error("datapoint is not a (timestamp, value) pair")]
    BadDatapoint,
    /// The path is not a string (or UTF-8 bytes).
    #[error("path is not a string")]
    BadName,
    /// The timestamp or the value is not a number for Python's `float()`.
    #[error("timestamp or value is not a number")]
    BadNumber,
    /// The point failed the same checks as a plaintext line.
    #[error("{0}")]
    Rejected(#[from] CarbonError),
}

/// One point from a pickle frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric path, tags included, as sent.
    pub name: String,
    /// The value; never NaN.
    pub value: f64,
    /// The timestamp.
    pub timestamp: Timestamp,
}

/// A complete frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The pickle payload, without its length prefix.
    pub payload: &'a [u8],
    /// Bytes of the buffer this frame takes, prefix included: drop them
    /// before looking for the next frame.
    pub consumed: usize,
}

/// The first frame of `buf`: `Ok(None)` when more bytes are needed, an
/// error as soon as the length prefix exceeds `max_frame` (without waiting
/// for the payload). A length equal to `max_frame` is accepted, as in
/// Twisted.
pub fn next_frame(buf: &[u8], max_frame: usize) -> Result<Option<Frame<'_>>, PickleError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > max_frame {
        return Err(PickleError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    Ok(buf.get(4..4 + len).map(|payload| Frame {
        payload,
        consumed: 4 + len,
    }))
}

/// Decode one frame's payload with carbon's defaults, skipping bad entries
/// silently (as carbon does). Use [`decode_frame_into`] to count them.
pub fn decode_frame(payload: &[u8]) -> Result<Vec<Point>, PickleError> {
    let mut points = Vec::new();
    decode_frame_into(
        payload,
        &CarbonLineOptions::default(),
        &mut points,
        &mut |_| {},
    )?;
    Ok(points)
}

/// Decode one frame's payload, appending its points to `points` and
/// reporting each skipped entry to `skipped`. `opts` are the plaintext
/// line's checks (`allow_inf`, `minus_one_is_now`, `name_check`).
pub fn decode_frame_into(
    payload: &[u8],
    opts: &CarbonLineOptions,
    points: &mut Vec<Point>,
    skipped: &mut dyn FnMut(EntryError),
) -> Result<(), PickleError> {
    // Python 2 `str` (STRING/BINSTRING opcodes) decoded as UTF-8, as
    // carbon's unpickler does with encoding='utf-8'. Unknown globals stay
    // errors: replace_unresolved_globals is not set.
    let payload = prewalk(payload)?;
    let options = serde_pickle::DeOptions::new().decode_strings();
    let value = serde_pickle::value_from_slice(&payload, options)?;
    let entries = match value {
        Value::List(v) | Value::Tuple(v) => v,
        _ => return Err(PickleError::NotAList),
    };
    points.reserve(entries.len());
    for entry in entries {
        match decode_entry(entry, opts) {
            Ok(p) => points.push(p),
            Err(e) => skipped(e),
        }
    }
    Ok(())
}

/// A two-item sequence, as Python's tuple unpacking accepts it.
fn pair(v: Value) -> Option<(Value, Value)> {
    match v {
        Value::List(v) | Value::Tuple(v) if v.len() == 2 => {
            let mut it = v.into_iter();
            Some((it.next()?, it.next()?))
        }
        _ => None,
    }
}

fn decode_entry(entry: Value, opts: &CarbonLineOptions) -> Result<Point, EntryError> {
    let (name, datapoint) = pair(entry).ok_or(EntryError::NotAPair)?;
    let (timestamp, value) = pair(datapoint).ok_or(EntryError::BadDatapoint)?;
    // carbon converts value and timestamp before it looks at the name.
    let value = to_float(&value).ok_or(EntryError::BadNumber)?;
    let timestamp = to_float(&timestamp).ok_or(EntryError::BadNumber)?;
    let name = match name {
        Value::String(s) => s,
        Value::Bytes(b) => String::from_utf8(b).map_err(|_| EntryError::BadName)?,
        _ => return Err(EntryError::BadName),
    };
    check_value(value, opts)?;
    let timestamp = resolve_timestamp(timestamp, opts)?;
    check_name(name.as_bytes(), opts)?;
    Ok(Point {
        name,
        value,
        timestamp,
    })
}

/// Python's `float(x)` for the values a pickle can hold.
fn to_float(v: &Value) -> Option<f64> {
    match v {
        Value::F64(f) => Some(*f),
        Value::I64(i) => Some(*i as f64),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        // Python's float(int) raises OverflowError past f64's range; the
        // decimal text round-trips through the same correctly rounded parser.
        // Past 2^1024 it overflows without the (quadratic) decimal text.
        Value::Int(big) if big.bits() > 1024 => None,
        Value::Int(big) => {
            let f: f64 = big.to_string().parse().ok()?;
            f.is_finite().then_some(f)
        }
        Value::String(s) => py_float(trim_py(s.as_bytes())),
        Value::Bytes(b) => py_float(trim_py(b)),
        _ => None,
    }
}

/// `float()` strips whitespace around a string argument.
fn trim_py(b: &[u8]) -> &[u8] {
    let Ok(s) = std::str::from_utf8(b) else {
        return b;
    };
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .as_bytes()
}

/// The deepest nesting of lists, tuples, dicts and sets a frame may hold.
/// serde-pickle converts, compares and drops values recursively, so deeper
/// nesting would overflow the stack; carbon's frames nest 3 deep.
pub const MAX_NESTING: usize = 64;

/// Decoding may take at most this many bytes per byte of payload, plus
/// [`EXPANSION_SLACK`]. A carbon frame decodes to about 10 times its size.
pub const MAX_EXPANSION: usize = 16;

/// See [`MAX_EXPANSION`].
pub const EXPANSION_SLACK: usize = 1 << 20;

/// Why [`prewalk`] refuses a payload before serde-pickle sees it.
enum Refusal {
    /// Not a pickle serde-pickle would read: truncated, an unknown opcode, a
    /// stack underflow, a memo id that was never stored, bytes after STOP.
    Bad(serde_pickle::ErrorCode, usize),
    TooDeep,
    TooLarge,
    Unorderable,
}

impl From<Refusal> for PickleError {
    fn from(r: Refusal) -> PickleError {
        match r {
            Refusal::Bad(code, at) => PickleError::Decode(serde_pickle::Error::Eval(code, at)),
            Refusal::TooDeep => PickleError::TooDeep,
            Refusal::TooLarge => PickleError::TooLarge,
            Refusal::Unorderable => PickleError::Unorderable,
        }
    }
}

/// A value on the simulated pickle stack.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// None, a bool, a number, a string or bytes: the bytes it holds on the
    /// heap, and whether it is a float.
    Scalar { heap: u64, float: bool },
    /// A list, tuple, dict or set: an index into `Walk::nodes`.
    Node(u32),
    /// A module global; `maybe_set` when it is, or may be, `set` or
    /// `frozenset`, whose REDUCE turns a list into a set.
    Global { maybe_set: bool },
}

/// A container. Its children that are containers are edges in
/// `Walk::edges`; the others are accounted for here.
#[derive(Debug, Default, Clone)]
struct Node {
    /// Heap bytes of the container itself and of its scalar children.
    heap: u64,
    /// A scalar child is a float.
    float: bool,
    /// Every child is ordered (a set or frozenset).
    ordered: bool,
    /// The last child, which REDUCE of `set`/`list`/... takes as argument.
    last: Option<Item>,
}

/// Python's `sys.int_max_str_digits`: the longest decimal int CPython 3.11+
/// converts (so carbon refuses a longer LONG too).
const MAX_INT_DIGITS: usize = 4300;
/// The bytes of a two's complement int of [`MAX_INT_DIGITS`] digits.
const MAX_INT_BYTES: u64 = 1786;

/// The size of one value inside a container (serde-pickle's `Value`).
const SLOT: u64 = 32;
/// serde-pickle starts a new stack of 128 values at each MARK; a tuple or
/// list built from it keeps that capacity.
const MARK_HEAP: u64 = 128 * SLOT;

/// A simulation of serde-pickle's unpickler (`Deserializer::parse_value`
/// and `convert_value`) that tracks only shapes and sizes, with no
/// recursion, so that a payload serde-pickle would choke on (too deep, too
/// large once memo references and DUPs are expanded, or with floats that
/// a set or dict would have to order) is refused before it is decoded.
///
/// Sizes are conservative: a memo reference or DUP shares the container in
/// the simulation, so a later change to one counts for both.
struct Walk<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<(Item, bool)>,
    /// Stack length and opcode offset at each open MARK.
    marks: Vec<(usize, usize)>,
    /// The most MARKs open at once.
    marks_high: usize,
    /// Opcodes to drop or replace before serde-pickle reads the payload.
    edits: Vec<(usize, Option<u8>)>,
    memo: std::collections::HashMap<u32, Item>,
    nodes: Vec<Node>,
    /// (parent, child, ordered): a container inside a container.
    edges: Vec<(u32, u32, bool)>,
    /// Containers cloned whole by serde-pickle while it parses (DUP, and
    /// memo references it resolves eagerly).
    clones: Vec<u32>,
    /// Heap bytes allocated so far, not counting clones and the conversion.
    heap: u64,
    /// The longest the stack has been.
    high: usize,
    budget: u64,
}

/// Refuse `payload` when serde-pickle must not decode it, else return
/// what serde-pickle should decode instead (see [`Walk`]).
fn prewalk(payload: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, PickleError> {
    let budget = (payload.len() as u64)
        .saturating_mul(MAX_EXPANSION as u64)
        .saturating_add(EXPANSION_SLACK as u64);
    let mut w = Walk {
        data: payload,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        marks_high: 0,
        edits: Vec::new(),
        memo: std::collections::HashMap::new(),
        nodes: Vec::new(),
        edges: Vec::new(),
        clones: Vec::new(),
        heap: 0,
        high: 0,
        budget,
    };
    let result = w.run()?;
    w.check(result)?;
    if w.edits.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(payload));
    }
    w.edits.sort_unstable();
    let mut out = Vec::with_capacity(payload.len());
    let mut from = 0;
    for (at, replacement) in w.edits {
        out.extend_from_slice(&payload[from..at]);
        out.extend(replacement);
        from = at + 1;
    }
    out.extend_from_slice(&payload[from..]);
    Ok(std::borrow::Cow::Owned(out))
}

impl Walk<'_> {
    fn bad<T>(&self, code: serde_pickle::ErrorCode) -> Result<T, Refusal> {
        Err(Refusal::Bad(code, self.pos))
    }

    fn take(&mut self, n: u64) -> Result<&[u8], Refusal> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return self.bad(serde_pickle::ErrorCode::EOFWhileParsing);
        }
        let at = self.pos;
        self.pos += n as usize;
        Ok(&self.data[at..self.pos])
    }

    fn byte(&mut self) -> Result<u8, Refusal> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: u64) -> Result<u64, Refusal> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A `\n`-terminated argument (or the rest of the input), as serde-pickle
    /// reads it.
    fn line(&mut self) -> &[u8] {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        self.pos += len;
        let line = &rest[..len];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    fn alloc(&mut self, bytes: u64) -> Result<(), Refusal> {
        self.heap = self.heap.saturating_add(bytes);
        if self.heap > self.budget {
            return Err(Refusal::TooLarge);
        }
        Ok(())
    }

    fn push(&mut self, item: Item) -> Result<(), Refusal> {
        self.push_ref(item, false)
    }

    /// Push; serde-pickle's stack is a Vec of values, so its high-water
    /// mark is heap too.
    fn push_ref(&mut self, item: Item, memo_ref: bool) -> Result<(), Refusal> {
        self.stack.push((item, memo_ref));
        if self.stack.len() > self.high {
            self.high = self.stack.len();
            self.alloc(SLOT)?;
        }
        Ok(())
    }

    fn scalar(&mut self, heap: u64, float: bool) -> Result<(), Refusal> {
        self.alloc(heap)?;
        self.push(Item::Scalar { heap, float })
    }

    fn base(&self) -> usize {
        self.marks.last().map_or(0, |&(base, _)| base)
    }

    fn pop(&mut self) -> Result<(Item, bool), Refusal> {
        if self.stack.len() <= self.base() {
            return self.bad(serde_pickle::ErrorCode::StackUnderflow)?;
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    /// Pop, resolving a memo reference as serde-pickle does: by a clone.
    fn pop_resolve(&mut self) -> Result<Item, Refusal> {
        let (item, memo_ref) = self.pop()?;
        if memo_ref {
            self.clone_of(item)?;
        }
        Ok(item)
    }

    fn clone_of(&mut self, item: Item) -> Result<(), Refusal> {
        match item {
            Item::Scalar { heap, .. } => self.alloc(heap),
            Item::Node(n) => {
                self.clones.push(n);
                Ok(())
            }
            Item::Global { .. } => Ok(()),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, Refusal> {
        Ok(self.pop_mark_at()?.0)
    }

    /// The items since the last MARK, and the MARK's offset.
    fn pop_mark_at(&mut self) -> Result<(Vec<Item>, usize), Refusal> {
        let Some((base, at)) = self.marks.pop() else {
            return self.bad(serde_pickle::ErrorCode::StackUnderflow);
        };
        Ok((self.stack.drain(base..).map(|(item, _)| item).collect(), at))
    }

    /// A new container; `spare` is capacity it holds beyond its items,
    /// which a copy or the conversion does not repeat.
    fn new_node(&mut self, spare: u64, ordered: bool) -> Result<u32, Refusal> {
        self.alloc(spare)?;
        let id = u32::try_from(self.nodes.len()).map_err(|_| Refusal::TooLarge)?;
        self.nodes.push(Node {
            ordered,
            ..Node::default()
        });
        Ok(id)
    }

    /// Add `item` to container `parent`; `ordered` for a set member or a
    /// dict key.
    fn add(&mut self, parent: u32, item: Item, ordered: bool) -> Result<(), Refusal> {
        self.alloc(SLOT)?;
        let p = &mut self.nodes[parent as usize];
        p.heap = p.heap.saturating_add(SLOT);
        p.last = Some(item);
        match item {
            Item::Scalar { heap, float } => {
                p.heap = p.heap.saturating_add(heap);
                p.float |= float;
                if float && (ordered || p.ordered) {
                    return Err(Refusal::Unorderable);
                }
            }
            Item::Node(child) => self.edges.push((parent, child, ordered)),
            Item::Global { .. } => {}
        }
        Ok(())
    }

    /// A new container holding `items`.
    fn container(&mut self, items: &[Item], spare: u64, ordered: bool) -> Result<Item, Refusal> {
        let id = self.new_node(spare, ordered)?;
        for &item in items {
            self.add(id, item, ordered)?;
        }
        Ok(Item::Node(id))
    }

    /// A dict holding the key/value pairs of `items`.
    fn dict_items(&mut self, dict: u32, items: &[Item]) -> Result<(), Refusal> {
        for pair in items.chunks_exact(2) {
            self.add(dict, pair[0], true)?;
            self.add(dict, pair[1], false)?;
        }
        Ok(())
    }

    /// The container at the top of the stack, which APPEND and friends change.
    fn top_node(&mut self) -> Result<u32, Refusal> {
        match self.stack.last() {
            Some(&(Item::Node(n), _)) if self.stack.len() > self.base() => Ok(n),
            Some(_) if self.stack.len() > self.base() => self.bad(
                serde_pickle::ErrorCode::InvalidStackTop("container", String::new()),
            ),
            _ => self.bad(serde_pickle::ErrorCode::StackUnderflow),
        }
    }

    fn memoize(&mut self, id: u32) -> Result<(), Refusal> {
        let (item, memo_ref) = self.pop()?;
        if memo_ref {
            self.clone_of(item)?;
        }
        self.memo.insert(id, item);
        self.push_ref(item, true)
    }

    fn get(&mut self, id: u32) -> Result<(), Refusal> {
        match self.memo.get(&id) {
            Some(&item) => self.push_ref(item, true),
            None => self.bad(serde_pickle::ErrorCode::MissingMemo(id)),
        }
    }

    fn ascii_id(&mut self) -> Result<u32, Refusal> {
        let line = self.line();
        match std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
            Some(id) => Ok(id),
            None => {
                let line = line.to_vec();
                self.bad(serde_pickle::ErrorCode::InvalidLiteral(line))
            }
        }
    }

    /// Walk the opcodes up to STOP; the value STOP returns.
    fn run(&mut self) -> Result<Item, Refusal> {
        use serde_pickle::ErrorCode;
        loop {
            let op = self.byte()?;
            match op {
                // PROTO, FRAME
                0x80 => drop(self.take(1)?),
                0x95 => drop(self.take(8)?),
                b'.' => {
                    let (item, _) = self.pop()?;
                    if self.pos != self.data.len() {
                        return self.bad(ErrorCode::TrailingBytes);
                    }
                    return Ok(item);
                }
                b'(' => {
                    self.marks.push((self.stack.len(), self.pos - 1));
                    if self.marks.len() > self.marks_high {
                        self.marks_high = self.marks.len();
                        self.alloc(MARK_HEAP)?;
                    }
                }
                // POP (a MARK when the current stack is empty), POP_MARK
                b'0' => {
                    if self.stack.len() <= self.base() {
                        self.pop_mark()?;
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => drop(self.pop_mark()?),
                // DUP: serde-pickle clones the value, resolving a memo ref.
                b'2' => {
                    let (item, _) = *self
                        .stack
                        .last()
                        .filter(|_| self.stack.len() > self.base())
                        .ok_or(Refusal::Bad(ErrorCode::StackUnderflow, self.pos))?;
                    self.clone_of(item)?;
                    self.push(item)?;
                }
                // PUT, BINPUT, LONG_BINPUT, MEMOIZE
                b'p' => {
                    let id = self.ascii_id()?;
                    self.memoize(id)?;
                }
                b'q' => {
                    let id = u32::from(self.byte()?);
                    self.memoize(id)?;
                }
                b'r' => {
                    let id = self.le(4)? as u32;
                    self.memoize(id)?;
                }
                0x94 => {
                    let id = self.memo.len() as u32;
                    self.memoize(id)?;
                }
                // GET, BINGET, LONG_BINGET
                b'g' => {
                    let id = self.ascii_id()?;
                    self.get(id)?;
                }
                b'h' => {
                    let id = u32::from(self.byte()?);
                    self.get(id)?;
                }
                b'j' => {
                    let id = self.le(4)? as u32;
                    self.get(id)?;
                }
                // NONE, NEWFALSE, NEWTRUE
                b'N' | 0x88 | 0x89 => self.scalar(0, false)?,
                // INT, LONG, FLOAT, STRING, UNICODE: a line each.
                // A decimal LONG past Python's own limit (int_max_str_digits)
                // would take seconds to convert, as would printing a huge
                // LONG4 in an error message.
                b'L' => {
                    let line = self.line();
                    if line.len() > MAX_INT_DIGITS + 2 {
                        let head = line[..16].to_vec();
                        return self.bad(ErrorCode::InvalidLiteral(head));
                    }
                    let len = line.len() as u64;
                    self.scalar(len, false)?;
                }
                b'I' | b'S' | b'V' => {
                    let len = self.line().len() as u64;
                    self.scalar(len, false)?;
                }
                b'F' => {
                    self.line();
                    self.scalar(0, true)?;
                }
                // BINFLOAT, BININT, BININT1, BININT2
                b'G' => {
                    self.take(8)?;
                    self.scalar(0, true)?;
                }
                b'J' => {
                    self.take(4)?;
                    self.scalar(0, false)?;
                }
                b'K' => {
                    self.take(1)?;
                    self.scalar(0, false)?;
                }
                b'M' => {
                    self.take(2)?;
                    self.scalar(0, false)?;
                }
                // Counted: LONG1, SHORT_BINBYTES, SHORT_BINSTRING,
                // SHORT_BINUNICODE (1 byte); LONG4, BINSTRING (i32); BINBYTES,
                // BINUNICODE (u32); BINBYTES8, BINUNICODE8, BYTEARRAY8 (u64).
                0x8a | b'C' | b'U' | 0x8c => {
                    let n = self.le(1)?;
                    self.take(n)?;
                    self.scalar(n, false)?;
                }
                0x8b | b'T' => {
                    let n = self.le(4)? as u32 as i32;
                    let Ok(n) = u64::try_from(n) else {
                        return self.bad(ErrorCode::NegativeLength);
                    };
                    if op == 0x8b && n > MAX_INT_BYTES {
                        return Err(Refusal::TooLarge);
                    }
                    self.take(n)?;
                    self.scalar(n, false)?;
                }
                b'B' | b'X' => {
                    let n = self.le(4)?;
                    self.take(n)?;
                    self.scalar(n, false)?;
                }
                0x8e | 0x8d | 0x96 => {
                    let n = self.le(8)?;
                    self.take(n)?;
                    self.scalar(n, false)?;
                }
                // EMPTY_TUPLE, TUPLE1..3, TUPLE
                b')' => {
                    let t = self.container(&[], 0, false)?;
                    self.push(t)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?.0);
                    }
                    items.reverse();
                    let t = self.container(&items, 0, false)?;
                    self.push(t)?;
                }
                // TUPLE, LIST: the MARK's stack becomes the container and
                // keeps its capacity of 128 values. The small tuples and
                // empty lists of protocols 0 and 1 (and of serde-pickle's
                // own writer), a few per point, are rewritten as
                // TUPLE1..3, EMPTY_TUPLE or EMPTY_LIST without their MARK,
                // which decode to the same values without that overhead.
                b't' | b'l' => {
                    let (items, mark) = self.pop_mark_at()?;
                    let short = match (op, items.len()) {
                        (b't', 0) => Some(b')'),
                        (b't', n @ 1..=3) => Some(0x84 + n as u8),
                        (b'l', 0) => Some(b']'),
                        _ => None,
                    };
                    let spare = match short {
                        Some(short) => {
                            self.edits.push((mark, None));
                            self.edits.push((self.pos - 1, Some(short)));
                            0
                        }
                        None => MARK_HEAP,
                    };
                    let t = self.container(&items, spare, false)?;
                    self.push(t)?;
                }
                // EMPTY_LIST, APPEND, APPENDS
                b']' => {
                    let l = self.container(&[], 0, false)?;
                    self.push(l)?;
                }
                b'a' => {
                    let (item, _) = self.pop()?;
                    let l = self.top_node()?;
                    self.add(l, item, false)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top_node()?;
                    for item in items {
                        self.add(l, item, false)?;
                    }
                }
                // EMPTY_DICT, DICT, SETITEM, SETITEMS
                b'}' => {
                    let d = self.container(&[], 0, false)?;
                    self.push(d)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let Item::Node(d) = self.container(&[], 0, false)? else {
                        unreachable!("a container is a node")
                    };
                    self.dict_items(d, &items)?;
                    self.push(Item::Node(d))?;
                }
                b's' => {
                    let (value, _) = self.pop()?;
                    let (key, _) = self.pop()?;
                    let d = self.top_node()?;
                    self.dict_items(d, &[key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top_node()?;
                    self.dict_items(d, &items)?;
                }
                // EMPTY_SET, ADDITEMS, FROZENSET
                0x8f => {
                    let s = self.container(&[], 0, true)?;
                    self.push(s)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let s = self.top_node()?;
                    for item in items {
                        self.add(s, item, true)?;
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let s = self.container(&items, MARK_HEAP, true)?;
                    self.push(s)?;
                }
                // GLOBAL, STACK_GLOBAL
                b'c' => {
                    let module = self.line().to_vec();
                    let name = self.line();
                    let builtin = matches!(&module[..], b"__builtin__" | b"builtins");
                    let maybe_set = builtin && matches!(name, b"set" | b"frozenset");
                    self.push(Item::Global { maybe_set })?;
                }
                0x93 => {
                    self.pop_resolve()?;
                    self.pop_resolve()?;
                    self.push(Item::Global { maybe_set: true })?;
                }
                // REDUCE: `set`, `frozenset`, `list`, ... take the last
                // argument (resolved: cloned) as their value.
                b'R' => {
                    let args = self.pop_resolve()?;
                    let global = self.pop_resolve()?;
                    let arg = match args {
                        Item::Node(t) => self.nodes[t as usize].last,
                        _ => None,
                    };
                    if let Some(arg) = arg {
                        self.clone_of(arg)?;
                    }
                    match (global, arg) {
                        (Item::Global { maybe_set }, Some(Item::Node(l))) => {
                            if maybe_set {
                                self.nodes[l as usize].ordered = true;
                            }
                            self.push(Item::Node(l))?;
                        }
                        (Item::Global { .. }, Some(arg)) => self.push(arg)?,
                        _ => self.scalar(0, false)?,
                    }
                }
                // INST, OBJ, NEWOBJ, NEWOBJ_EX: an empty dict stands in for
                // the object; BUILD replaces it by its state.
                b'i' => {
                    self.line();
                    self.line();
                    self.pop_mark()?;
                    let d = self.container(&[], 0, false)?;
                    self.push(d)?;
                }
                b'o' => {
                    self.pop_mark()?;
                    self.pop()?;
                    let d = self.container(&[], 0, false)?;
                    self.push(d)?;
                }
                0x81 => {
                    self.pop()?;
                    self.pop()?;
                    let d = self.container(&[], 0, false)?;
                    self.push(d)?;
                }
                0x92 => {
                    self.pop()?;
                    self.pop()?;
                    self.pop()?;
                    let d = self.container(&[], 0, false)?;
                    self.push(d)?;
                }
                b'b' => {
                    let (state, _) = self.pop()?;
                    self.pop()?;
                    self.push(state)?;
                }
                code => return self.bad(ErrorCode::Unsupported(char::from(code))),
            }
        }
    }

    /// Over the whole graph of containers: the nesting depth, whether a
    /// float has to be ordered, and the heap the conversion of the result
    /// and the clones takes (every shared container counted once per
    /// reference, as serde-pickle copies it).
    fn check(&mut self, result: Item) -> Result<(), Refusal> {
        let n = self.nodes.len();
        // Children of each node, as a compressed adjacency list.
        let mut start = vec![0u32; n + 1];
        for &(p, _, _) in &self.edges {
            start[p as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut children = vec![(0u32, false); self.edges.len()];
        for &(p, c, ordered) in &self.edges {
            children[fill[p as usize] as usize] = (c, ordered);
            fill[p as usize] += 1;
        }

        // Post-order over every node, without recursion.
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            New,
            Open,
            Done,
        }
        let mut state = vec![State::New; n];
        let mut depth = vec![0usize; n];
        let mut size = vec![0u64; n];
        let mut float = vec![false; n];
        let mut todo: Vec<(u32, bool)> = Vec::new();
        for root in 0..n as u32 {
            if state[root as usize] != State::New {
                continue;
            }
            todo.push((root, false));
            while let Some((v, children_done)) = todo.pop() {
                let vi = v as usize;
                let kids = &children[start[vi] as usize..start[vi + 1] as usize];
                if !children_done {
                    if state[vi] == State::Done {
                        continue;
                    }
                    state[vi] = State::Open;
                    todo.push((v, true));
                    for &(c, _) in kids {
                        match state[c as usize] {
                            // A container inside itself: serde-pickle
                            // refuses it too, after cloning it first.
                            State::Open => return Err(Refusal::TooDeep),
                            State::New => todo.push((c, false)),
                            State::Done => {}
                        }
                    }
                    continue;
                }
                let node = &self.nodes[vi];
                let (mut d, mut s, mut f) = (0usize, node.heap, node.float);
                for &(c, ordered) in kids {
                    let ci = c as usize;
                    d = d.max(depth[ci]);
                    s = s.saturating_add(size[ci]);
                    f |= float[ci];
                    if float[ci] && (ordered || node.ordered) {
                        return Err(Refusal::Unorderable);
                    }
                }
                if f && node.ordered {
                    return Err(Refusal::Unorderable);
                }
                depth[vi] = d + 1;
                if depth[vi] > MAX_NESTING {
                    return Err(Refusal::TooDeep);
                }
                size[vi] = s;
                float[vi] = f;
                state[vi] = State::Done;
            }
        }
        let mut total = self.heap;
        if let Item::Node(r) = result {
            total = total.saturating_add(size[r as usize]);
        }
        for &c in &self.clones {
            total = total.saturating_add(size[c as usize]);
        }
        if total > self.budget {
            return Err(Refusal::TooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `pickle.dumps(P, protocol=p)` for p in 0..=5 by CPython 3.11, with
    /// P = [('a.b', (1700000000, 1.5)), ('c;k=v', [1700000001, 2]),
    ///      ('d', (-1, '3.25')), ('a.b', (1700000002.5, True)),
    ///      ('big', (1700000003, 2**70)), ('été', (1700000004, b' 7 ')),
    ///      ('bad', (1700000005, None)), ('nan', (1700000006, float('nan'))),
    ///      'junk', ('x', (1, 2, 3))]
    const VECTORS: [&str; 6] = [
        "286c70300a2856612e620a70310a2849313730303030303030300a46312e350a7470320a7470330a612856633b6b3d760a70340a286c70350a49313730303030303030310a6149320a617470360a612856640a70370a28492d310a56332e32350a70380a7470390a747031300a612867310a2846313730303030303030322e350a4930310a747031310a747031320a6128566269670a7031330a2849313730303030303030330a4c313138303539313632303731373431313330333432344c0a747031340a747031350a612856e974e90a7031360a2849313730303030303030340a635f636f646563730a656e636f64650a7031370a28562037200a7031380a566c6174696e310a7031390a747032300a527032310a747032320a747032330a6128566261640a7032340a2849313730303030303030350a4e747032350a747032360a6128566e616e0a7032370a2849313730303030303030360a466e616e0a747032380a747032390a61566a756e6b0a7033300a612856780a7033310a2849310a49320a49330a747033320a747033330a612e",
        "5d710028285803000000612e627101284a00f15365473ff8000000000000747102747103285805000000633b6b3d7671045d7105284a01f153654b0265747106285801000000647107284affffffff5804000000332e3235710874710974710a286801284741d954fc40a000004930310a74710b74710c285803000000626967710d284a03f153654c313138303539313632303731373431313330333432344c0a74710e74710f285805000000c3a974c3a97110284a04f15365635f636f646563730a656e636f64650a7111285803000000203720711258060000006c6174696e3171137471145271157471167471172858030000006261647118284a05f153654e74711974711a2858030000006e616e711b284a06f15365477ff800000000000074711c74711d58040000006a756e6b711e28580100000078711f284b014b024b03747120747121652e",
        "80025d7100285803000000612e6271014a00f15365473ff80000000000008671028671035805000000633b6b3d7671045d7105284a01f153654b026586710658010000006471074affffffff5804000000332e3235710886710986710a68014741d954fc40a000008886710b86710c5803000000626967710d4a03f153658a0900000000000000004086710e86710f5805000000c3a974c3a971104a04f15365635f636f646563730a656e636f64650a71115803000000203720711258060000006c6174696e317113867114527115867116867117580300000062616471184a05f153654e86711986711a58030000006e616e711b4a06f15365477ff800000000000086711c86711d58040000006a756e6b711e580100000078711f4b014b024b03877120867121652e",
        "80035d7100285803000000612e6271014a00f15365473ff80000000000008671028671035805000000633b6b3d7671045d7105284a01f153654b026586710658010000006471074affffffff5804000000332e3235710886710986710a68014741d954fc40a000008886710b86710c5803000000626967710d4a03f153658a0900000000000000004086710e86710f5805000000c3a974c3a971104a04f1536543032037207111867112867113580300000062616471144a05f153654e86711586711658030000006e616e71174a06f15365477ff800000000000086711886711958040000006a756e6b711a580100000078711b4b014b024b0387711c86711d652e",
        "800495c4000000000000005d94288c03612e62944a00f15365473ff8000000000000869486948c05633b6b3d76945d94284a01f153654b026586948c0164944affffffff8c04332e3235948694869468014741d954fc40a0000088869486948c03626967944a03f153658a09000000000000000040869486948c05c3a974c3a9944a04f15365430320372094869486948c03626164944a05f153654e869486948c036e616e944a06f15365477ff8000000000000869486948c046a756e6b948c0178944b014b024b0387948694652e",
        "800595c4000000000000005d94288c03612e62944a00f15365473ff8000000000000869486948c05633b6b3d76945d94284a01f153654b026586948c0164944affffffff8c04332e3235948694869468014741d954fc40a0000088869486948c03626967944a03f153658a09000000000000000040869486948c05c3a974c3a9944a04f15365430320372094869486948c03626164944a05f153654e869486948c036e616e944a06f15365477ff8000000000000869486948c046a756e6b948c0178944b014b024b0387948694652e",
    ];

    #[test]
    fn decodes_every_protocol_like_carbon() {
        let want = vec![
            Point {
                name: "a.b".into(),
                value: 1.5,
                timestamp: Timestamp::At(1_700_000_000.0),
            },
            Point {
                name: "c;k=v".into(),
                value: 2.0,
                timestamp: Timestamp::At(1_700_000_001.0),
            },
            Point {
                name: "d".into(),
                value: 3.25,
                timestamp: Timestamp::Now,
            },
            Point {
                name: "a.b".into(),
                value: 1.0,
                timestamp: Timestamp::At(1_700_000_002.5),
            },
            Point {
                name: "big".into(),
                value: 2f64.powi(70),
                timestamp: Timestamp::At(1_700_000_003.0),
            },
            Point {
                name: "été".into(),
                value: 7.0,
                timestamp: Timestamp::At(1_700_000_004.0),
            },
        ];
        for (proto, v) in VECTORS.iter().enumerate() {
            let mut points = Vec::new();
            let mut skipped = Vec::new();
            decode_frame_into(
                &hex(v),
                &CarbonLineOptions::default(),
                &mut points,
                &mut |e| skipped.push(e),
            )
            .unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
            assert_eq!(points, want, "protocol {proto}");
            assert_eq!(
                skipped,
                vec![
                    EntryError::BadNumber,
                    EntryError::Rejected(CarbonError::NanValue),
                    EntryError::NotAPair,
                    EntryError::BadDatapoint,
                ],
                "protocol {proto}"
            );
            assert_eq!(decode_frame(&hex(v)).unwrap(), want);
        }
    }

    #[test]
    fn never_runs_code() {
        // [('a', (1, E()))] where E reduces to os.system('true').
        let evil = hex("80025d710058010000006171014b0163706f7369780a73797374656d0a71025804000000747275657103857104527105867106867107612e");
        assert!(matches!(decode_frame(&evil), Err(PickleError::Decode(_))));
        // A set (builtins.set via GLOBAL/REDUCE) is data, but not a number.
        let set = hex("80025d71002858010000006171014b014b0286710286710358010000007371044b01635f5f6275696c74696e5f5f0a7365740a71055d7106284b014b026585710752710886710986710a652e");
        let mut skipped = Vec::new();
        let mut points = Vec::new();
        decode_frame_into(&set, &CarbonLineOptions::default(), &mut points, &mut |e| {
            skipped.push(e)
        })
        .unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(skipped, vec![EntryError::BadNumber]);
        // {'a': (1, 2)}
        assert!(matches!(
            decode_frame(&hex("80027d710058010000006171014b014b02867102732e")),
            Err(PickleError::NotAList)
        ));
        assert!(matches!(
            decode_frame(b"\x80\x02]q\x00(X"),
            Err(PickleError::Decode(_))
        ));
        assert!(matches!(decode_frame(b""), Err(PickleError::Decode(_))));
    }

    #[test]
    fn splits_frames() {
        let mut buf = vec![0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 2, b'x'];
        let f = next_frame(&buf, 10).unwrap().unwrap();
        assert_eq!(f.payload, b"abc");
        assert_eq!(f.consumed, 7);
        assert_eq!(next_frame(&buf[7..], 10).unwrap(), None);
        buf.push(b'y');
        assert_eq!(next_frame(&buf[7..], 10).unwrap().unwrap().payload, b"xy");
        assert_eq!(next_frame(&buf[..3], 10).unwrap(), None);
        // Exactly the limit is fine; one more is refused before the payload.
        assert!(next_frame(&buf, 3).unwrap().is_some());
        assert!(matches!(
            next_frame(&[0, 0, 0, 4], 3),
            Err(PickleError::FrameTooLarge { len: 4, max: 3 })
        ));
        assert!(matches!(
            next_frame(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_FRAME),
            Err(PickleError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn line_options_apply() {
        let opts = CarbonLineOptions {
            allow_inf: false,
            minus_one_is_now: false,
            ..CarbonLineOptions::default()
        };
        // protocol 2: [('i', (5, float('inf'))), ('m', (-1, 1))]
        let payload = serde_pickle::to_vec(
            &vec![("i", (5, f64::INFINITY)), ("m", (-1, 1.0))],
            serde_pickle::SerOptions::new().proto_v2(),
        )
        .unwrap();
        let mut points = Vec::new();
        let mut skipped = Vec::new();
        decode_frame_into(&payload, &opts, &mut points, &mut |e| skipped.push(e)).unwrap();
        assert_eq!(skipped, vec![EntryError::Rejected(CarbonError::InfValue)]);
        assert_eq!(points[0].timestamp, Timestamp::At(-1.0));
    }
    /// What Python's pickle protocol 4 writes for `n` points with 5-byte
    /// names (`m0000`...), every string and tuple memoised, APPENDS every
    /// 1000 items: about 26 bytes a point, the densest honest frame.
    fn protocol4_points(n: usize) -> Vec<u8> {
        let mut p = vec![0x80, 4, b']', 0x94, b'('];
        for i in 0..n {
            if i > 0 && i % 1000 == 0 {
                p.extend_from_slice(b"e(");
            }
            p.extend_from_slice(&[0x8c, 5]);
            p.extend_from_slice(format!("m{:04}", i % 10_000).as_bytes());
            p.extend_from_slice(&[0x94, b'J']);
            p.extend_from_slice(&1_700_000_000i32.to_le_bytes());
            p.push(b'G');
            p.extend_from_slice(&1.5f64.to_be_bytes());
            p.extend_from_slice(&[0x86, 0x94, 0x86, 0x94]);
        }
        p.extend_from_slice(b"e.");
        p
    }

    #[test]
    fn full_size_frames_decode() {
        // As many points as fit a DEFAULT_MAX_FRAME frame.
        let n = (DEFAULT_MAX_FRAME - 16) / 27;
        let payload = protocol4_points(n);
        assert!(payload.len() <= DEFAULT_MAX_FRAME, "{}", payload.len());
        assert_eq!(decode_frame(&payload).unwrap().len(), n);
        // Protocol 2 through serde-pickle's own writer.
        let points: Vec<(String, (u32, f64))> = (0..20_000)
            .map(|i| (format!("a.b.c{i}"), (1_700_000_000, 0.5)))
            .collect();
        let payload =
            serde_pickle::to_vec(&points, serde_pickle::SerOptions::new().proto_v2()).unwrap();
        assert!(payload.len() <= DEFAULT_MAX_FRAME);
        assert_eq!(decode_frame(&payload).unwrap().len(), 20_000);
    }

    #[test]
    fn protocol_0_frames_do_not_pay_for_marks() {
        // What Python writes with protocol 0: every tuple from a MARK, which
        // serde-pickle would give 4 KiB; the walk rewrites them.
        let n = 20_000;
        let mut p = b"(lp0\n".to_vec();
        for i in 0..n {
            let id = 1 + 3 * i;
            p.extend_from_slice(
                format!(
                    "(Vm{i:05}\np{}\n(I1700000000\nF1.5\ntp{}\ntp{}\na",
                    id,
                    id + 1,
                    id + 2
                )
                .as_bytes(),
            );
        }
        p.push(b'.');
        assert!(p.len() <= DEFAULT_MAX_FRAME, "{}", p.len());
        let points = decode_frame(&p).unwrap();
        assert_eq!(points.len(), n);
        assert_eq!(points[n - 1].name, format!("m{:05}", n - 1));
        assert_eq!(points[n - 1].value, 1.5);
        // Empty tuples from MARKs: 20 000 are 80 MB to serde-pickle as
        // written, 1.3 MB rewritten.
        let tuples = |n| {
            let mut p = b"]".to_vec();
            for _ in 0..n {
                p.extend_from_slice(b"(ta");
            }
            p.push(b'.');
            p
        };
        let mut skipped = 0;
        let opts = CarbonLineOptions::default();
        decode_frame_into(&tuples(20_000), &opts, &mut Vec::new(), &mut |_| {
            skipped += 1
        })
        .unwrap();
        assert_eq!(skipped, 20_000);
        // 400 000 (1.6 GB as written) are still over 16 times the frame.
        assert!(matches!(
            decode_frame(&tuples(400_000)),
            Err(PickleError::TooLarge)
        ));
    }

    /// `[[[...]]]`, `depth` lists deep, built by EMPTY_LIST and APPEND.
    fn nested_lists(depth: usize) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.push(b'.');
        p
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // The fuzzer's crash: serde-pickle converts and drops recursively.
        assert!(matches!(
            decode_frame(&nested_lists(MAX_NESTING + 1)),
            Err(PickleError::TooDeep)
        ));
        assert!(matches!(
            decode_frame(&nested_lists(10_000)),
            Err(PickleError::TooDeep)
        ));
        assert!(matches!(
            decode_frame(&nested_lists(500_000)),
            Err(PickleError::TooDeep | PickleError::TooLarge)
        ));
        // At the limit it decodes (a list of one entry, which is no point).
        let mut skipped = 0;
        decode_frame_into(
            &nested_lists(MAX_NESTING),
            &CarbonLineOptions::default(),
            &mut Vec::new(),
            &mut |_| skipped += 1,
        )
        .unwrap();
        assert_eq!(skipped, 1);
        // Tuples from MARKs, and a list that holds itself.
        let mut marks = vec![b'('; 100];
        marks.extend(std::iter::repeat_n(b't', 100));
        marks.push(b'.');
        assert!(matches!(decode_frame(&marks), Err(PickleError::TooDeep)));
        assert!(matches!(
            decode_frame(b"\x80\x02]q\x00h\x00a."),
            Err(PickleError::TooDeep)
        ));
    }

    #[test]
    fn expansion_is_refused_not_an_allocation() {
        // A list of 200 ints, memoised, then referenced 5000 times: a 15 KB
        // frame that would expand to 32 MB.
        let mut p = b"\x80\x02]q\x00(".to_vec();
        p.extend(std::iter::repeat_n(&b"K\x01"[..], 200).flatten());
        p.extend_from_slice(b"e]");
        p.extend(std::iter::repeat_n(&b"h\x00a"[..], 5000).flatten());
        p.push(b'.');
        assert!(matches!(decode_frame(&p), Err(PickleError::TooLarge)));
        // DUP copies the value at once.
        let mut p = b"\x80\x02](".to_vec();
        p.extend(std::iter::repeat_n(&b"K\x01"[..], 200).flatten());
        p.extend_from_slice(b"e");
        p.extend(std::iter::repeat_n(b'2', 5000));
        p.push(b'.');
        assert!(matches!(decode_frame(&p), Err(PickleError::TooLarge)));
        // Each MARK is a 128-value stack: 300 KB of them would be 1.2 GB.
        let mut p = vec![b'('; 300_000];
        p.push(b'.');
        assert!(matches!(decode_frame(&p), Err(PickleError::TooLarge)));
        // A memo reference re-memoised is a copy each time.
        let mut p = b"\x80\x02](".to_vec();
        p.extend(std::iter::repeat_n(&b"K\x01"[..], 200).flatten());
        p.extend_from_slice(b"eq\x00");
        p.extend(std::iter::repeat_n(&b"h\x00q\x00"[..], 5000).flatten());
        p.push(b'.');
        assert!(matches!(decode_frame(&p), Err(PickleError::TooLarge)));
        // Too large is also a bad frame for the stream reader: one error,
        // and the next frame is read.
        let mut stream = (p.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&p);
        let f = next_frame(&stream, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(f.consumed, stream.len());
    }

    #[test]
    fn floats_in_sets_and_dict_keys_are_refused() {
        // pickle.dumps(P, protocol) for 2 and 4, P =
        // [('s', (1, {nan, 1.0}))], [('f', (1, frozenset([1.5])))],
        // [('d', (1, {1.5: 2}))], [('k', (1, {(1, 2.5): 2}))]
        for v in [
            "80025d710058010000007371014b01635f5f6275696c74696e5f5f0a7365740a71025d710328473ff0000000000000477ff800000000000065857104527105867106867107612e",
            "80049524000000000000005d948c0173944b018f9428473ff0000000000000477ff80000000000009086948694612e",
            "80025d710058010000006671014b01635f5f6275696c74696e5f5f0a66726f7a656e7365740a71025d7103473ff800000000000061857104527105867106867107612e",
            "8004951a000000000000005d948c0166944b0128473ff8000000000000919486948694612e",
            "80025d710058010000006471014b017d7102473ff80000000000004b0273867103867104612e",
            "8004951c000000000000005d948c0164944b017d94473ff80000000000004b027386948694612e",
            "80025d710058010000006b71014b017d71024b014740040000000000008671034b0273867104867105612e",
            "80049520000000000000005d948c016b944b017d944b0147400400000000000086944b027386948694612e",
        ] {
            assert!(
                matches!(decode_frame(&hex(v)), Err(PickleError::Unorderable)),
                "{v}"
            );
        }
        // A float as a dict value is fine: [('a', (1, {1: 2.5}))].
        let mut skipped = Vec::new();
        decode_frame_into(
            &hex("80025d710058010000006171014b017d71024b0147400400000000000073867103867104612e"),
            &CarbonLineOptions::default(),
            &mut Vec::new(),
            &mut |e| skipped.push(e),
        )
        .unwrap();
        assert_eq!(skipped, vec![EntryError::BadNumber]);
    }

    #[test]
    fn huge_ints_overflow_without_printing_them() {
        // [('a', (1, 2**1024))] and [('a', (1, 2**1023))]: Python's float()
        // raises OverflowError on the first.
        let frame = |bits: usize| {
            let mut p = b"\x80\x02]q\x00X\x01\x00\x00\x00aK\x01\x8b".to_vec();
            let mut n = vec![0u8; bits / 8 + 2];
            n[bits / 8] = 1 << (bits % 8);
            p.extend_from_slice(&(n.len() as u32).to_le_bytes());
            p.extend_from_slice(&n);
            p.extend_from_slice(b"\x86\x86a.");
            p
        };
        let mut skipped = Vec::new();
        let mut points = Vec::new();
        let opts = CarbonLineOptions::default();
        decode_frame_into(&frame(1024), &opts, &mut points, &mut |e| skipped.push(e)).unwrap();
        assert_eq!(skipped, vec![EntryError::BadNumber]);
        decode_frame_into(&frame(1023), &opts, &mut points, &mut |e| skipped.push(e)).unwrap();
        assert_eq!(points[0].value, 2f64.powi(1023));
        // Past 4300 digits (1786 bytes) an int refuses the frame, as
        // Python refuses the decimal form.
        decode_frame_into(&frame(14_000), &opts, &mut points, &mut |e| skipped.push(e)).unwrap();
        assert_eq!(skipped.len(), 2);
        assert!(matches!(
            decode_frame(&frame(1 << 23)),
            Err(PickleError::TooLarge)
        ));
        let long = |digits: usize| {
            let mut p = b"\x80\x02]q\x00X\x01\x00\x00\x00aK\x01L".to_vec();
            p.extend(std::iter::repeat_n(b'7', digits));
            p.extend_from_slice(b"L\n\x86\x86a.");
            p
        };
        decode_frame_into(&long(4300), &opts, &mut points, &mut |e| skipped.push(e)).unwrap();
        assert_eq!(skipped.len(), 3);
        let started = std::time::Instant::now();
        assert!(matches!(
            decode_frame(&long(1_000_000)),
            Err(PickleError::Decode(_))
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
