//! The server's CPU time and peak memory, read from `/proc/<pid>`.
//!
//! Imports nothing of the library.

use std::io;
use std::time::Duration;

/// user + system CPU time of a process (all its threads) so far.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/stat"))?;
    // SAFETY: sysconf only reads a configuration value; it has no
    // preconditions and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has used 100 for decades; the fallback only guards a failed call.
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / hz,
    ))
}

/// The peak resident set size (`VmHWM`) in KiB.
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmhwm_kib(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM in /proc/PID/status"))
}

/// utime + stime in clock ticks from the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so fields are counted from the last `)`: utime and stime
/// are fields 14 and 15, i.e. the 12th and 13th after it.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM:   123456 kB` → 123456.
fn parse_vmhwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "4242 (node) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 11 0 100 1000 200",
                Some(175),
            ),
            (
                "7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1",
                Some(7),
            ),
            ("7 (x) R 1 7", None),
            ("garbage", None),
            ("7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 4", None),
        ];
        for (stat, want) in cases {
            assert_eq!(parse_stat_ticks(stat), *want, "{stat}");
        }
    }

    #[test]
    fn vmhwm() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "Name:\tnode\nVmPeak:\t  9 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 1 kB\n",
                Some(51234),
            ),
            ("Name:\tkthreadd\n", None),
            ("VmHWM:\tlots kB\n", None),
        ];
        for (status, want) in cases {
            assert_eq!(parse_vmhwm_kib(status), *want, "{status}");
        }
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(peak_rss_kib(pid).unwrap() > 0);
        // Burn CPU until the kernel's 100 Hz accounting shows some. Wall time
        // alone is not enough on a loaded machine (the thread may not run),
        // so spin until it does, within a bound that fails the test.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_time(pid).unwrap() == Duration::ZERO {
            assert!(t.elapsed() < Duration::from_secs(30), "no CPU time counted");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }
}
