//! statsd over a unix datagram socket: DogStatsD's `unixgram` (its clients'
//! and agent's default for unix sockets), which statsd_exporter reads with
//! `--statsd.listen-unixgram`. Each datagram is one packet, as over UDP.
//!
//! One receive thread per socket, reading into its own shard, like a UDP
//! receive thread ([`super::udp`]). A panic while one datagram is parsed is
//! caught around that datagram: it is lost, counted in the thread's
//! `task_restarts` and logged, and the thread goes on. At shutdown (or when
//! a reload removes it) it reads what the kernel holds, then removes the
//! socket file.
//!
//! Imports, besides `listener` itself: `shutdown`, `stats`, `supervise`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Ingest, LogLimiter};
use crate::shutdown::CancellationToken;
use crate::stats::TaskStats;

/// The largest datagram read whole. DogStatsD clients send at most 8 KiB
/// (their default buffer) to 64 KiB; a longer datagram is cut here, and its
/// cut line counts as bad.
pub const MAX_DATAGRAM: usize = 256 * 1024;

/// How often an idle receive thread looks at the shutdown token.
const POLL: Duration = Duration::from_millis(100);

/// Bind a datagram socket at `path` (a stale socket file is replaced, any
/// other file refused) and apply `mode`.
pub fn bind(path: &Path, mode: Option<u32>) -> io::Result<UnixDatagram> {
    super::unix::clear_stale(path)?;
    let socket = UnixDatagram::bind(path)?;
    super::unix::set_mode(path, mode)?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// Start the receive thread. It returns once `token` is cancelled and the
/// datagrams already queued were read, after removing the socket file.
pub fn spawn(
    socket: UnixDatagram,
    path: PathBuf,
    mut ingest: Ingest,
    token: CancellationToken,
    task: Arc<TaskStats>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("unixgram-recv".into())
        .spawn(move || {
            let mut log = LogLimiter::new(10, Duration::from_secs(10));
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let mut one = |n: usize, buf: &[u8]| {
                crate::supervise::catch(&task, "a unix datagram", &mut log, || {
                    ingest.packet(&buf[..n])
                });
            };
            while !token.is_cancelled() {
                match socket.recv(&mut buf) {
                    Ok(n) => one(n, &buf),
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "unixgram receive error");
                        std::thread::sleep(POLL);
                    }
                }
            }
            // What the kernel accepted before shutdown was received: read it.
            if socket.set_nonblocking(true).is_ok() {
                while let Ok(n) = socket.recv(&mut buf) {
                    one(n, &buf);
                }
            }
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::debug!(path = %path.display(), error = %e, "cannot remove the unix socket");
            }
        })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
