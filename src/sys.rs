//! What the process asks the operating system about itself: its host name.
//! A leaf.

/// The short host name (up to the first dot), as one Graphite path node:
/// the relay's default stats prefix.
pub fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes and we read only up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let full = String::from_utf8_lossy(&buf[..end]);
    let short = full.split('.').next().unwrap_or("").to_string();
    if short.is_empty() {
        "localhost".to_string()
    } else {
        // One Graphite path node, as carbon-c-relay makes it.
        short.replace([':', ' ', '/'], "_")
    }
}
