//! statsd over a unix stream socket (the reference's tcp server with
//! `socket`, or DogStatsD's `unixstream`; see [`super::stream::Framing`]).
//!
//! Imports, besides `listener` itself: `supervise`.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use super::stream::StreamCtx;

/// Bind at `path`, replacing a stale socket left by an earlier run (but never
/// any other kind of file), and apply `mode` if given.
pub fn bind(path: &Path, mode: Option<u32>) -> io::Result<UnixListener> {
    clear_stale(path)?;
    let listener = UnixListener::bind(path)?;
    set_mode(path, mode)?;
    Ok(listener)
}

/// Remove a socket left at `path` by an earlier run; refuse any other file.
pub fn clear_stale(path: &Path) -> io::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    Ok(())
}

/// Apply the socket file's `mode`, if one is configured.
pub fn set_mode(path: &Path, mode: Option<u32>) -> io::Result<()> {
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Accept until the token is cancelled, then remove the socket file.
pub async fn accept_loop(listener: UnixListener, path: std::path::PathBuf, ctx: Arc<StreamCtx>) {
    // Accept errors (out of file descriptors...): the one backoff.
    let mut backoff =
        crate::supervise::Backoff::between(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            _ = ctx.token.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff.reset();
                ctx.accept(stream, path.display().to_string());
            }
            Err(e) => {
                tracing::warn!(error = %e, "unix accept failed");
                tokio::time::sleep(backoff.fail()).await;
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::debug!(path = %path.display(), error = %e, "cannot remove the unix socket");
    }
}
