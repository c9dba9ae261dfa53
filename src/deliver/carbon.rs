//! The carbon encoders, sending side: plaintext lines and pickle frames. The
//! graphite sink (a flush) and the relay destinations (a batch of points)
//! both write through these, so the two paths cannot drift apart.
//!
//! **Plaintext**: `name value timestamp\n`, the value as JavaScript's
//! `Number.prototype.toString` prints it (integers without a point,
//! shortest round-trip digits otherwise, `1e+21` past 1e21): the
//! reference statsd's format, and the same function
//! (`ryu_js`) as [`crate::flush::number::push_js_number`].
//!
//! **Pickle**: frames of a 4-byte big-endian length followed by a pickled
//! list of `(path, (timestamp, value))`, written by `serde-pickle` in
//! protocol 2, which every carbon (Python 2 and 3) unpickles with its safe
//! unpickler: only lists, tuples, unicode strings, ints and floats, no
//! globals. Carbon refuses frames over 1 MiB (`MAX_LENGTH` of its
//! `Int32StringReceiver`), so [`push_pickle_frames`] splits a flush into
//! frames of at most [`MAX_FRAME_METRICS`] metrics and well under that size;
//! [`push_pickle_frame`] writes one frame as it is given (a relay batch,
//! whose size the relay's `batch` bounds). The timestamp keeps the caller's
//! integer type: serde-pickle writes a `u64` and an `i64` past 2^31
//! differently, and each path keeps its bytes.
//!
//! Imports nothing of the crate outside `deliver`.

use std::borrow::Cow;
use std::cell::Cell;

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

/// Metrics in one frame at most (carbon-c-relay and statsd-style clients use
/// the same figure).
pub const MAX_FRAME_METRICS: usize = 1000;

/// Payload bytes one frame is kept under: carbon's limit is 1 MiB, minus room
/// for one more metric that the estimate below may have undercounted.
const FRAME_BYTES_TARGET: usize = 768 * 1024;

/// Bytes one metric adds to a frame besides its path: the tuple opcodes, a
/// BININT or LONG1 timestamp, a BINFLOAT value and the path's length prefix.
const PER_METRIC_OVERHEAD: usize = 32;

/// Append one plaintext line, `name value ts\n`. `ts` is the timestamp
/// already formatted (a flush formats its one timestamp once).
#[inline]
pub fn push_line(out: &mut Vec<u8>, name: &[u8], value: f64, ts: &[u8]) {
    let mut b = ryu_js::Buffer::new();
    let value = b.format(value);
    out.reserve(name.len() + value.len() + ts.len() + 3);
    out.extend_from_slice(name);
    out.push(b' ');
    out.extend_from_slice(value.as_bytes());
    out.push(b' ');
    out.extend_from_slice(ts);
    out.push(b'\n');
}

/// Why points could not be pickled.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// serde-pickle refused the data (it only does for strings over 4 GiB).
    #[error("pickle encoding: {0}")]
    Encode(#[from] serde_pickle::Error),
    /// A frame's payload does not fit the 4-byte length prefix.
    #[error("pickle frame of {0} bytes is too large")]
    TooLarge(usize),
}

/// One frame's points, serialised once as a list of `(path, (timestamp,
/// value))` straight from the caller's iterator (no intermediate list).
struct Frame<I>(Cell<Option<I>>, usize);

impl<'a, I, T> Serialize for Frame<I>
where
    I: Iterator<Item = (Cow<'a, str>, T, f64)>,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.1))?;
        // Serialised once: a second call sees an empty list.
        for (name, ts, value) in self.0.take().into_iter().flatten() {
            seq.serialize_element(&(name.as_ref(), (ts, value)))?;
        }
        seq.end()
    }
}

/// Append `points` as one length-prefixed pickle frame.
pub fn push_pickle_frame<'a, I, T>(points: I, out: &mut Vec<u8>) -> Result<(), PickleError>
where
    I: ExactSizeIterator<Item = (Cow<'a, str>, T, f64)>,
    T: Serialize,
{
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let opts = serde_pickle::SerOptions::new().proto_v2();
    let len = points.len();
    if let Err(e) = serde_pickle::to_writer(out, &Frame(Cell::new(Some(points)), len), opts) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - 4;
    let Ok(prefix) = u32::try_from(len) else {
        out.truncate(start);
        return Err(PickleError::TooLarge(len));
    };
    out[start..start + 4].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Append `points` as pickle frames of at most [`MAX_FRAME_METRICS`]
/// points and about [`FRAME_BYTES_TARGET`] bytes each; `point` gives each
/// one's `(path, timestamp, value)`. Returns how many frames were written.
pub fn push_pickle_frames<'a, P, T: Serialize>(
    points: &'a [P],
    point: impl Fn(&'a P) -> (Cow<'a, str>, T, f64),
    out: &mut Vec<u8>,
) -> Result<usize, PickleError> {
    let mut frames = 0;
    let mut rest = points;
    while !rest.is_empty() {
        let n = frame_len(rest, |p| point(p).0.len());
        let (frame, tail) = rest.split_at(n);
        push_pickle_frame(frame.iter().map(&point), out)?;
        frames += 1;
        rest = tail;
    }
    Ok(frames)
}

/// How many of `points` go into the next frame: at least one, at most
/// [`MAX_FRAME_METRICS`], and no more than fit [`FRAME_BYTES_TARGET`].
fn frame_len<'a, P>(points: &'a [P], name_len: impl Fn(&'a P) -> usize) -> usize {
    let mut bytes = 0;
    for (i, p) in points.iter().take(MAX_FRAME_METRICS).enumerate() {
        bytes += name_len(p) + PER_METRIC_OVERHEAD;
        if bytes > FRAME_BYTES_TARGET && i > 0 {
            return i;
        }
    }
    points.len().min(MAX_FRAME_METRICS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flush::naming::GraphiteLine;

    #[test]
    fn plaintext_values_are_the_flush_paths_numbers() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.5,
            1.0 / 3.0,
            1e21,
            123456789012345680000.0,
            1e-7,
            0.000001,
            -2.5,
            f64::MAX,
        ] {
            let mut out = Vec::new();
            push_line(&mut out, b"a.b", v, b"10");
            let want = format!("a.b {} 10\n", crate::flush::number::js_number(v));
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    type Point = (String, (u64, f64));

    /// The graphite sink's call: `lines` stamped `timestamp`.
    fn encode(
        lines: &[GraphiteLine],
        timestamp: u64,
        out: &mut Vec<u8>,
    ) -> Result<usize, PickleError> {
        push_pickle_frames(
            lines,
            |l| (Cow::Borrowed(l.name.as_str()), timestamp, l.value),
            out,
        )
    }

    /// Split `buf` into frames and unpickle each, checking the length prefixes.
    fn decode(mut buf: &[u8]) -> Vec<Vec<Point>> {
        let mut frames = Vec::new();
        while !buf.is_empty() {
            assert!(buf.len() >= 4, "truncated length prefix");
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert!(
                len <= 1 << 20,
                "frame of {len} bytes exceeds carbon's limit"
            );
            let payload = &buf[4..4 + len];
            // Protocol 2, as carbon under Python 2 can read it.
            assert_eq!(&payload[..2], b"\x80\x02");
            let points: Vec<Point> =
                serde_pickle::from_slice(payload, serde_pickle::DeOptions::new()).unwrap();
            frames.push(points);
            buf = &buf[4 + len..];
        }
        frames
    }

    fn line(name: &str, value: f64) -> GraphiteLine {
        GraphiteLine {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn round_trips() {
        let lines = vec![
            line("stats.foo", 1.5),
            line("stats_counts.foo;env=prod", 15.0),
            line("stats.timers.t.upper_90", -2e-7),
            line("stats.gauges.big", 1e300),
            line("stats.gauges.unicode_\u{e9}", 0.0),
        ];
        for ts in [0, 1_700_000_000, u64::from(u32::MAX) + 1] {
            let mut out = Vec::new();
            assert_eq!(encode(&lines, ts, &mut out).unwrap(), 1);
            let frames = decode(&out);
            let want: Vec<Point> = lines
                .iter()
                .map(|l| (l.name.clone(), (ts, l.value)))
                .collect();
            assert_eq!(frames, vec![want]);
        }
    }

    #[test]
    fn empty_flush_writes_nothing() {
        let mut out = Vec::new();
        assert_eq!(encode(&[], 1, &mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn splits_by_count_and_size() {
        // (metrics, name length, frames expected)
        for (n, name_len, frames_want) in [
            (1, 10, 1),
            (1000, 10, 1),
            (1001, 10, 2),
            (2500, 10, 3),
            // 2000 names of 1000 bytes: ~2 MiB, so frames are cut by size.
            (2000, 1000, 3),
            // One metric larger than the target still goes out, alone.
            (2, 800 * 1024, 2),
        ] {
            let lines: Vec<GraphiteLine> = (0..n)
                .map(|i| {
                    let mut name = format!("m{i}.");
                    name.extend(std::iter::repeat_n('x', name_len));
                    line(&name, i as f64)
                })
                .collect();
            let mut out = Vec::new();
            let frames = encode(&lines, 42, &mut out).unwrap();
            assert_eq!(frames, frames_want, "{n} metrics of {name_len}");
            let decoded = decode(&out);
            assert_eq!(decoded.len(), frames_want);
            let flat: Vec<Point> = decoded.into_iter().flatten().collect();
            assert_eq!(flat.len(), n);
            for (i, (name, (ts, v))) in flat.iter().enumerate() {
                assert_eq!(name, &lines[i].name);
                assert_eq!(*ts, 42);
                assert_eq!(*v, i as f64);
            }
        }
    }

    #[test]
    fn one_frame_keeps_the_callers_timestamp_type() {
        // Past 2^31 serde-pickle writes an i64 in 8 bytes and a u64 in 9:
        // the relay's points (i64) keep their bytes.
        let big = i64::from(u32::MAX) + 1;
        let (mut signed, mut unsigned) = (Vec::new(), Vec::new());
        push_pickle_frame(std::iter::once((Cow::Borrowed("a"), big, 1.0)), &mut signed).unwrap();
        push_pickle_frame(
            std::iter::once((Cow::Borrowed("a"), big as u64, 1.0)),
            &mut unsigned,
        )
        .unwrap();
        assert_eq!(unsigned.len(), signed.len() + 1);
        let v: Vec<(String, (i64, f64))> =
            serde_pickle::from_slice(&signed[4..], serde_pickle::DeOptions::new()).unwrap();
        assert_eq!(v, [("a".to_string(), (big, 1.0))]);
    }
}
