//! What the process asks the operating system about itself: its host name
//! (`uname(2)`'s node name, which is what `gethostname(2)` returns on Linux).
//! A leaf.

/// The whole host name, as Node's `os.hostname()` returns it.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The short host name (up to the first dot), as one Graphite path node:
/// the relay's default stats prefix.
pub fn short_hostname() -> String {
    let full = hostname();
    let short = full.split('.').next().unwrap_or("").to_string();
    if short.is_empty() {
        "localhost".to_string()
    } else {
        // One Graphite path node, as carbon-c-relay makes it.
        short.replace([':', ' ', '/'], "_")
    }
}
