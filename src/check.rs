//! The checks that every part of the config shares: key-path errors
//! ([`Bad`]), addresses, paths, durations, spools. Used by the section
//! validators ([`super::toml`], [`super::relay`]) and by each output kind's
//! own validation ([`crate::sink::SinkKind`]). A leaf.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spool::SpoolConfig;

/// A validation failure: the key path (`flush.interval`, `sink[1].address`;
/// list indexes count from 0) and why; the loader adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub key: String,
    pub reason: String,
}

/// A [`Bad`] at `key`.
pub fn bad(key: impl Into<String>, reason: impl Into<String>) -> Bad {
    Bad {
        key: key.into(),
        reason: reason.into(),
    }
}

/// `path` as written in the config file `file`: relative paths start at the
/// file's directory (the embedded config has none: the working directory).
pub fn relative_to(file: &str, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        return p;
    }
    match Path::new(file).parent() {
        Some(dir) if !file.starts_with('<') => dir.join(p),
        _ => p,
    }
}

/// Listen addresses, each an IP and a port, none twice.
pub fn listen_addrs(list: &[String], key: &str) -> Result<Vec<SocketAddr>, Bad> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let addr = parse_listen_addr(a).map_err(|r| bad(format!("{key}[{i}]"), r))?;
        if out.contains(&addr) {
            return Err(bad(format!("{key}[{i}]"), format!("{a:?} is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A listener address: an IP literal and a port (`0.0.0.0:8125`, `[::]:8125`).
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not an IP:port address (e.g. \"0.0.0.0:8125\" or \"[::]:8125\")")
    })
}

/// A unix socket mode written in octal (`"0660"`, `"660"`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 && !s.is_empty() => Ok(m),
        _ => Err(format!(
            "{s:?} is not an octal file mode between \"0\" and \"7777\" (e.g. \"0660\")"
        )),
    }
}

/// A flush interval: at least 1ms (the reference's timer cannot do less).
pub fn check_interval(d: Duration) -> Result<(), String> {
    if d < Duration::from_millis(1) {
        Err(format!(
            "{} is too short: the flush interval must be at least 1ms",
            humantime_serde::re::humantime::format_duration(d)
        ))
    } else {
        Ok(())
    }
}

/// A duration that must not be zero.
pub fn check_nonzero(d: Duration) -> Result<(), String> {
    if d.is_zero() {
        Err("must be longer than 0s".to_string())
    } else {
        Ok(())
    }
}

/// A reconnect backoff: `min` more than 0s, `max` at least `min`.
pub fn check_backoff(min: Duration, max: Duration) -> Result<(), String> {
    check_nonzero(min)?;
    if max < min {
        return Err(format!(
            "{} is shorter than backoff_min ({})",
            humantime_serde::re::humantime::format_duration(max),
            humantime_serde::re::humantime::format_duration(min)
        ));
    }
    Ok(())
}

/// A percentile: finite, non-zero, in (-100, 100]. Outside this the reference
/// reads past its sorted samples or skips the value.
pub fn check_percentile(p: f64) -> Result<(), String> {
    if !p.is_finite() || p == 0.0 || p <= -100.0 || p > 100.0 {
        Err(format!(
            "{p} is not a percentile: must be in (0, 100], or in (-100, 0) for the top N%"
        ))
    } else {
        Ok(())
    }
}

/// A destination address: `host:port`, an IPv6 host in brackets, port
/// 1-65535. Host names are resolved when the output connects.
pub fn check_address(s: &str) -> Result<(), String> {
    let usage = "(expected host:port, e.g. \"graphite.example.com:2003\" or \"[::1]:2003\")";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port {usage}"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{s:?}: {port:?} is not a port number 1-65535 {usage}"
            ))
        }
    }
    if let Some(inner) = host.strip_prefix('[') {
        match inner.strip_suffix(']') {
            Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
            _ => Err(format!("{s:?}: bad IPv6 address in brackets {usage}")),
        }
    } else if host.is_empty() {
        Err(format!("{s:?} has no host {usage}"))
    } else if host.contains(':') {
        Err(format!("{s:?}: write an IPv6 address in brackets {usage}"))
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host) {
        Ok(())
    } else {
        Err(format!("{s:?}: {host:?} is not a host name {usage}"))
    }
}

/// Letters, digits, '-' and '_' in non-empty dot-separated labels of at most
/// 63 bytes, 253 in all; one trailing dot allowed.
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    host.len() <= 253 && name.split('.').all(label_ok)
}

/// The smallest `spool_bytes`: room for a few segments of a few records.
const MIN_SPOOL_BYTES: u64 = 64 * 1024;

/// A spool from its two keys: `dir` (relative to the config file's
/// directory) joined with `sub` (the sink's name, or the relay cluster and
/// destination), so that no two spools share files; `max_bytes` defaults to
/// 1 GiB. Segments roll at 8 MiB, or at an eighth of a smaller cap, so that
/// dropping the oldest for the cap frees a part, not all, of the spool.
pub fn spool_config(
    file: &str,
    dir: Option<&str>,
    max_bytes: Option<u64>,
    sub: &[&str],
    dir_key: &str,
    bytes_key: &str,
) -> Result<Option<SpoolConfig>, Bad> {
    let Some(dir) = dir else {
        if max_bytes.is_some() {
            let dir = dir_key.rsplit('.').next().unwrap_or(dir_key);
            return Err(bad(bytes_key, format!("needs `{dir}` too")));
        }
        return Ok(None);
    };
    if dir.is_empty() {
        return Err(bad(
            dir_key,
            "must not be empty (leave it out for no spool)",
        ));
    }
    let max_bytes = max_bytes.unwrap_or(crate::spool::DEFAULT_MAX_BYTES);
    if max_bytes < MIN_SPOOL_BYTES {
        return Err(bad(
            bytes_key,
            format!("must be at least {MIN_SPOOL_BYTES}"),
        ));
    }
    let mut path = relative_to(file, dir);
    for s in sub {
        path.push(s);
    }
    Ok(Some(SpoolConfig {
        dir: path,
        max_bytes,
        segment_bytes: crate::spool::DEFAULT_SEGMENT_BYTES.min(max_bytes / 8),
    }))
}

/// A regular expression from the config, compared by its text (so that a
/// config with the same patterns is the same config).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    /// Compile `re`; the error says why it is not a regular expression.
    pub fn new(re: &str) -> Result<Pattern, String> {
        regex::Regex::new(re)
            .map(Pattern)
            .map_err(|e| format!("not a regular expression: {e}"))
    }

    /// Whether it matches anywhere in `s`.
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Pattern) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

/// Each of `list` compiled; errors name `key[i]`.
pub fn patterns(list: &[String], key: &str) -> Result<Vec<Pattern>, Bad> {
    list.iter()
        .enumerate()
        .map(|(i, p)| Pattern::new(p).map_err(|r| bad(format!("{key}[{i}]"), r)))
        .collect()
}
/// Networks whose clients a listener serves (`allow = [...]`); empty serves
/// every client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList(Vec<ipnet::IpNet>);

impl AllowList {
    /// Networks as written: `"10.0.0.0/8"`, `"2001:db8::/32"`, or an address
    /// alone (`"127.0.0.1"`, one host). Errors name `key[i]`.
    pub fn parse(list: &[String], key: &str) -> Result<AllowList, Bad> {
        let mut nets = Vec::with_capacity(list.len());
        for (i, n) in list.iter().enumerate() {
            let net = match n.parse::<ipnet::IpNet>() {
                Ok(net) => net,
                Err(_) => match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        return Err(bad(
                            format!("{key}[{i}]"),
                            format!("{n:?} is not a network (e.g. \"10.0.0.0/8\", \"::1/128\") or an IP address"),
                        ))
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(AllowList(nets))
    }

    /// Whether every client is served.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a client at `ip` is served. An IPv4 client seen on an IPv6
    /// socket (`::ffff:10.0.0.1`) is checked as the IPv4 address it is.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let l = AllowList::parse(
            &["10.0.0.0/8".into(), "::1".into(), "192.168.1.7".into()],
            "statsd.allow",
        )
        .unwrap();
        for (ip, ok) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("::1", true),
            ("::2", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("::ffff:10.9.9.9", true),
        ] {
            assert_eq!(l.allows(ip.parse().unwrap()), ok, "{ip}");
        }
        assert!(AllowList::default().allows("1.2.3.4".parse().unwrap()));
        let e = AllowList::parse(&["10.0.0.0/33".into()], "http.allow").unwrap_err();
        assert_eq!(e.key, "http.allow[0]");
    }
}
