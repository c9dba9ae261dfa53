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
    let options = serde_pickle::DeOptions::new().decode_strings();
    let value = serde_pickle::value_from_slice(payload, options)?;
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
}
