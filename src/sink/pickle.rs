//! Carbon's pickle protocol, sending side: frames of a 4-byte big-endian
//! length followed by a pickled list of `(path, (timestamp, value))`.
//!
//! The payload is written by `serde-pickle` in protocol 2, which every carbon
//! (Python 2 and 3) unpickles with its safe unpickler: only lists, tuples,
//! unicode strings, ints and floats, no globals. Carbon refuses frames over
//! 1 MiB (`MAX_LENGTH` of its `Int32StringReceiver`), so a flush is split
//! into frames of at most [`MAX_FRAME_METRICS`] metrics and well under that
//! size.

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use crate::flush::naming::GraphiteLine;

/// Metrics in one frame at most (carbon-c-relay and statsd-style clients use
/// the same figure).
pub const MAX_FRAME_METRICS: usize = 1000;

/// Payload bytes one frame is kept under: carbon's limit is 1 MiB, minus room
/// for one more metric that the estimate below may have undercounted.
const FRAME_BYTES_TARGET: usize = 768 * 1024;

/// Bytes one metric adds to a frame besides its path: the tuple opcodes, a
/// BININT or LONG1 timestamp, a BINFLOAT value and the path's length prefix.
const PER_METRIC_OVERHEAD: usize = 32;

/// Why a flush could not be pickled.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// serde-pickle refused the data (it only does for strings over 4 GiB).
    #[error("pickle encoding: {0}")]
    Encode(#[from] serde_pickle::Error),
    /// A frame's payload does not fit the 4-byte length prefix.
    #[error("pickle frame of {0} bytes is too large")]
    TooLarge(usize),
}

/// One frame's metrics, serialised as a list of `(path, (timestamp, value))`.
struct Frame<'a> {
    lines: &'a [GraphiteLine],
    timestamp: u64,
}

impl Serialize for Frame<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.lines.len()))?;
        for l in self.lines {
            seq.serialize_element(&(l.name.as_str(), (self.timestamp, l.value)))?;
        }
        seq.end()
    }
}

/// Append `lines`, all stamped `timestamp`, to `out` as length-prefixed
/// pickle frames. Returns how many frames were written.
pub fn encode(
    lines: &[GraphiteLine],
    timestamp: u64,
    out: &mut Vec<u8>,
) -> Result<usize, PickleError> {
    let mut frames = 0;
    let mut rest = lines;
    while !rest.is_empty() {
        let n = frame_len(rest);
        let (frame, tail) = rest.split_at(n);
        write_frame(frame, timestamp, out)?;
        frames += 1;
        rest = tail;
    }
    Ok(frames)
}

/// How many of `lines` go into the next frame: at least one, at most
/// [`MAX_FRAME_METRICS`], and no more than fit [`FRAME_BYTES_TARGET`].
fn frame_len(lines: &[GraphiteLine]) -> usize {
    let mut bytes = 0;
    for (i, l) in lines.iter().take(MAX_FRAME_METRICS).enumerate() {
        bytes += l.name.len() + PER_METRIC_OVERHEAD;
        if bytes > FRAME_BYTES_TARGET && i > 0 {
            return i;
        }
    }
    lines.len().min(MAX_FRAME_METRICS)
}

fn write_frame(
    lines: &[GraphiteLine],
    timestamp: u64,
    out: &mut Vec<u8>,
) -> Result<(), PickleError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let opts = serde_pickle::SerOptions::new().proto_v2();
    serde_pickle::to_writer(out, &Frame { lines, timestamp }, opts)?;
    let len = out.len() - start - 4;
    let prefix = u32::try_from(len).map_err(|_| PickleError::TooLarge(len))?;
    out[start..start + 4].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Point = (String, (u64, f64));

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
}
