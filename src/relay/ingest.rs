//! Carbon input to routed points: each plaintext line and pickled point is
//! checked by [`crate::parse::carbon`] / [`crate::parse::pickle`] (carbon
//! 1.1.7's rules, configurable; the decisions are listed there), refused
//! ones are counted per case ([`DropReason`]), the rest routed.
//!
//! How the parsers' cases map to the relay's counters:
//!
//! | case | counter (`metricsInvalid.*`) |
//! |---|---|
//! | line over `max_line_length` | `tooLong` |
//! | `path value`, no timestamp (unless allowed) | `missingTimestamp` |
//! | `path` alone, four or more fields, a pickle entry that is not `(path, (ts, value))` | `badFields` |
//! | value not a number (line or pickle) | `nonNumeric` |
//! | value NaN, or ±Inf with `allow_inf = false` | `nanInf` |
//! | timestamp not a number, or not finite | `badTimestamp` |
//! | name not UTF-8 / not a string, or refused by `name_check = "strict"` | `illegalName` |
//! | pickle frame too large, not a pickle, not a list | `badFrame` |
//!
//! Blank lines are skipped without counting. A timestamp of `-1` (or a
//! missing one, when allowed) is stamped with the current time and counted
//! as `timestampNow`.
//!
//! Imports, besides `relay` itself: `parse`, `stats`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::router::{Router, Wait};
use crate::parse::carbon::{parse_line, CarbonError, CarbonLineOptions, Timestamp};
use crate::parse::pickle::{decode_frame_into, EntryError, PickleError};
use crate::stats::incr;
use crate::stats::relay::DropReason;

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The counter of a refused line or point; `None` for a blank line.
pub fn reason(e: CarbonError) -> Option<DropReason> {
    Some(match e {
        CarbonError::Empty => return None,
        CarbonError::LineTooLong => DropReason::TooLong,
        CarbonError::InvalidUtf8 | CarbonError::IllegalName => DropReason::IllegalName,
        CarbonError::MissingValue | CarbonError::ExtraFields => DropReason::BadFields,
        CarbonError::MissingTimestamp => DropReason::MissingTimestamp,
        CarbonError::InvalidValue => DropReason::NonNumeric,
        CarbonError::NanValue | CarbonError::InfValue => DropReason::NanInf,
        CarbonError::InvalidTimestamp | CarbonError::TimestampNotFinite => DropReason::BadTimestamp,
    })
}

fn entry_reason(e: EntryError) -> Option<DropReason> {
    match e {
        EntryError::NotAPair | EntryError::BadDatapoint => Some(DropReason::BadFields),
        EntryError::BadName => Some(DropReason::IllegalName),
        EntryError::BadNumber => Some(DropReason::NonNumeric),
        EntryError::Rejected(c) => reason(c),
    }
}

fn count(router: &Router, r: Option<DropReason>) {
    if let Some(r) = r {
        incr(router.stats.invalid(r), 1);
    }
}

fn resolve(router: &Router, t: Timestamp) -> i64 {
    if t == Timestamp::Now {
        incr(&router.stats.timestamp_now, 1);
    }
    t.resolve(now())
}

/// Route every line of `data` (complete lines; the last may lack its `\n`).
pub fn route_lines(router: &Router, data: &[u8], opts: &CarbonLineOptions) {
    for line in data.split(|&b| b == b'\n') {
        match parse_line(line, opts) {
            Ok(p) => {
                let ts = resolve(router, p.timestamp);
                router.route(p.name, p.value, ts);
            }
            Err(e) => count(router, reason(e)),
        }
    }
}

/// Route the lines of `data` from a stream receiver, in order, until one
/// must wait ([`Router::route_stream`]): then the bytes before that line
/// (which were routed) and what to wait for. `None` when every line was.
pub fn route_lines_from(
    router: &Router,
    data: &[u8],
    opts: &CarbonLineOptions,
    block: bool,
) -> Option<(usize, Wait)> {
    let mut off = 0;
    for line in data.split(|&b| b == b'\n') {
        match parse_line(line, opts) {
            Ok(p) => {
                let ts = p.timestamp.resolve(now());
                if let Some(w) = router.route_stream(p.name, p.value, ts, block) {
                    return Some((off, w));
                }
                if p.timestamp == Timestamp::Now {
                    incr(&router.stats.timestamp_now, 1);
                }
            }
            Err(e) => count(router, reason(e)),
        }
        off += line.len() + 1;
    }
    None
}

/// Decode one pickle frame payload (without its length prefix) into
/// `points`, counting bad entries; route them with [`route_points_from`].
pub fn decode_pickle(
    router: &Router,
    payload: &[u8],
    opts: &CarbonLineOptions,
    points: &mut Vec<crate::parse::pickle::Point>,
) -> Result<(), PickleError> {
    points.clear();
    decode_frame_into(payload, opts, points, &mut |e| {
        count(router, entry_reason(e))
    })?;
    incr(&router.stats.frames_received, 1);
    Ok(())
}

/// Route decoded pickle points in order until one must wait: then how many
/// were routed and what to wait for.
pub fn route_points_from(
    router: &Router,
    points: &[crate::parse::pickle::Point],
    block: bool,
) -> Option<(usize, Wait)> {
    for (i, p) in points.iter().enumerate() {
        let ts = p.timestamp.resolve(now());
        if let Some(w) = router.route_stream(p.name.as_bytes(), p.value, ts, block) {
            return Some((i, w));
        }
        if p.timestamp == Timestamp::Now {
            incr(&router.stats.timestamp_now, 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parser_case_has_a_counter() {
        assert_eq!(reason(CarbonError::Empty), None);
        assert_eq!(
            reason(CarbonError::TimestampNotFinite),
            Some(DropReason::BadTimestamp)
        );
        assert_eq!(
            entry_reason(EntryError::Rejected(CarbonError::NanValue)),
            Some(DropReason::NanInf)
        );
    }
}
