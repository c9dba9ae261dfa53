//! statsd over a unix stream socket (the reference's tcp server with `socket`).

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
    let listener = UnixListener::bind(path)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(listener)
}

/// Accept until the token is cancelled, then remove the socket file.
pub async fn accept_loop(listener: UnixListener, path: std::path::PathBuf, ctx: Arc<StreamCtx>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = ctx.token.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                ctx.accept(stream, path.display().to_string());
            }
            Err(e) => {
                tracing::warn!(error = %e, "unix accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::debug!(path = %path.display(), error = %e, "cannot remove the unix socket");
    }
}
