//! The state file (`[flush] state_file`): gauges, and optionally the last
//! interval's counters, saved at shutdown and restored at start, so that a
//! deploy does not reset every gauge to "no data" until its client sends again.
//!
//! The format is text, one series per line, so that an operator can read and
//! edit it:
//!
//! ```text
//! # statsyard state v1
//! g 42 - queue.depth
//! g 3.5 2 idle.gauge
//! c 17 requests;env=prod
//! ```
//!
//! `g VALUE TTL KEY` is a gauge with the flushes it has left under
//! `delete_gauges` (`-` for none), `c VALUE KEY` a counter's total of the
//! interval that was not flushed. Keys are the registry's bytes (statsd lines
//! never hold a newline, so a key never does). Values are written with Rust's
//! shortest round-trip formatting, so they come back bit for bit.
//!
//! The file is written to a temporary file next to it, synced, then renamed
//! over the old one: a crash while saving leaves the old file whole. A line
//! that cannot be read is skipped and counted, never fatal: a bad state file
//! must not stop a metrics server from starting.
//!
//! Owns the state file format. A leaf: imports nothing of the crate.

use std::io::Write;
use std::path::Path;

/// The first line of every state file.
const HEADER: &str = "# statsyard state v1";

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Gauges: key, value, and the flushes left before `delete_gauges` drops it.
    pub gauges: Vec<(Vec<u8>, f64, Option<u32>)>,
    /// Counters of the interval that was not flushed: key, total.
    pub counters: Vec<(Vec<u8>, f64)>,
}

/// A state file read back, with the lines that could not be used.
#[derive(Debug, Default)]
pub struct Loaded {
    pub state: State,
    /// Lines skipped because they could not be read.
    pub bad_lines: usize,
}

impl State {
    /// The file's text.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * (self.gauges.len() + self.counters.len()) + 32);
        out.extend_from_slice(HEADER.as_bytes());
        out.push(b'\n');
        for (key, value, ttl) in &self.gauges {
            match ttl {
                Some(t) => out.extend_from_slice(format!("g {value:?} {t} ").as_bytes()),
                None => out.extend_from_slice(format!("g {value:?} - ").as_bytes()),
            }
            out.extend_from_slice(key);
            out.push(b'\n');
        }
        for (key, value) in &self.counters {
            out.extend_from_slice(format!("c {value:?} ").as_bytes());
            out.extend_from_slice(key);
            out.push(b'\n');
        }
        out
    }

    /// Read a file's text. Unknown or malformed lines are skipped and counted.
    pub fn decode(text: &[u8]) -> Loaded {
        let mut loaded = Loaded::default();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            if decode_line(line, &mut loaded.state).is_none() {
                loaded.bad_lines += 1;
            }
        }
        loaded
    }

    /// Whether there is nothing to save.
    pub fn is_empty(&self) -> bool {
        self.gauges.is_empty() && self.counters.is_empty()
    }
}

/// Split off the next space-separated field.
fn field(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = rest.iter().position(|&b| b == b' ')?;
    Some((&rest[..at], &rest[at + 1..]))
}

fn number(b: &[u8]) -> Option<f64> {
    let v: f64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

fn decode_line(line: &[u8], state: &mut State) -> Option<()> {
    let (kind, rest) = field(line)?;
    match kind {
        b"g" => {
            let (value, rest) = field(rest)?;
            let (ttl, key) = field(rest)?;
            let ttl = match ttl {
                b"-" => None,
                t => Some(std::str::from_utf8(t).ok()?.parse::<u32>().ok()?),
            };
            if key.is_empty() {
                return None;
            }
            state.gauges.push((key.to_vec(), number(value)?, ttl));
        }
        b"c" => {
            let (value, key) = field(rest)?;
            if key.is_empty() {
                return None;
            }
            state.counters.push((key.to_vec(), number(value)?));
        }
        _ => return None,
    }
    Some(())
}

/// Read the state file; a missing file is an empty state.
pub fn load(path: &Path) -> std::io::Result<Loaded> {
    match std::fs::read(path) {
        Ok(text) => Ok(State::decode(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded::default()),
        Err(e) => Err(e),
    }
}

/// Replace the state file with `state`, atomically (temporary file, sync, rename).
pub fn save(path: &Path, state: &State) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&state.encode())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let state = State {
            gauges: vec![
                (b"a.b".to_vec(), 0.1 + 0.2, None),
                (b"q;env=prod".to_vec(), -1e300, Some(3)),
                (b"with space".to_vec(), 5e-324, None),
            ],
            counters: vec![(b"c".to_vec(), 17.0), (b"r".to_vec(), 2.5)],
        };
        let loaded = State::decode(&state.encode());
        assert_eq!(loaded.bad_lines, 0);
        assert_eq!(loaded.state, state);
    }

    #[test]
    fn bad_lines_are_skipped_and_counted() {
        let text = b"# statsyard state v1\ng 1 - ok\ng nan - x\ng 1 zz x\nq 1 x\ng 1 -\nc 2 \r\nc 3 fine\r\n";
        let loaded = State::decode(text);
        assert_eq!(loaded.bad_lines, 5);
        assert_eq!(loaded.state.gauges, vec![(b"ok".to_vec(), 1.0, None)]);
        assert_eq!(loaded.state.counters, vec![(b"fine".to_vec(), 3.0)]);
    }

    #[test]
    fn save_replaces_and_load_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(load(&path).unwrap().state, State::default());
        let mut state = State::default();
        state.gauges.push((b"g".to_vec(), 1.0, None));
        save(&path, &state).unwrap();
        state.gauges[0].1 = 2.0;
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap().state, state);
        // Only the state file is left: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
