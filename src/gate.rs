//! What a listener checks before it serves a client: its allow-list of
//! source networks and, for a TCP listener, its TLS ([`crate::tls`]). One
//! [`Gate`] per listener, shared by its accept loop and swapped in place by a
//! reload (new networks, a rotated certificate), so nothing is rebound.
//!
//! Refusals are counted (`refused_by_allow`, `tls_handshake_failures`,
//! `tls_client_certs_refused`) and logged at a limited rate.
//!
//! Imports: `check`, `log_limit`, `stats`, `tls`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::check::AllowList;
use crate::log_limit::LogLimiter;
use crate::stats::{incr, Stats};
use crate::tls::{Acceptor, MaybeTls};

/// One listener's checks.
pub struct Gate {
    allow: RwLock<AllowList>,
    /// The list is empty (every client served): checked first, without the
    /// lock, since UDP asks once per datagram.
    open: AtomicBool,
    tls: Acceptor,
    stats: Arc<Stats>,
    /// What logs call the listener (`tcp 0.0.0.0:8125`).
    what: String,
    log: Mutex<LogLimiter>,
}

impl Gate {
    /// Open to every client, in plaintext, until [`Gate::set_allow`] and
    /// [`Gate::set_tls`].
    pub fn new(what: impl Into<String>, stats: Arc<Stats>) -> Gate {
        let what = what.into();
        Gate {
            allow: RwLock::new(AllowList::default()),
            open: AtomicBool::new(true),
            tls: Acceptor::new(what.clone(), stats.clone()),
            stats,
            what,
            log: Mutex::new(LogLimiter::new(10, Duration::from_secs(60))),
        }
    }

    /// Serve only clients of these networks from now on.
    pub fn set_allow(&self, allow: AllowList) {
        let open = allow.is_open();
        let mut list = self.allow.write().unwrap_or_else(|e| e.into_inner());
        *list = allow;
        self.open.store(open, Ordering::Release);
    }

    /// TLS for the connections accepted from now on (`None`: plaintext).
    pub fn set_tls(&self, config: Option<Arc<ServerConfig>>) {
        self.tls.set(config);
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_tls()
    }

    /// Whether a client at `ip` may send or connect; a refusal is counted
    /// and logged at a limited rate.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.open.load(Ordering::Acquire) {
            return true;
        }
        let ok = self
            .allow
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .allows(ip);
        if !ok {
            incr(&self.stats.refused_by_allow, 1);
            let allowed = self.log.lock().unwrap_or_else(|e| e.into_inner()).allow();
            if let Some(suppressed) = allowed {
                tracing::warn!(
                    listener = %self.what,
                    client = %ip,
                    suppressed,
                    "client not in the listener's allow list: refused"
                );
            }
        }
        ok
    }

    /// Finish an accepted connection's TLS handshake, if TLS is on (see
    /// [`Acceptor::accept`]); run it on the connection's own task.
    pub async fn open<S>(&self, stream: S, peer: &str) -> Option<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.tls.accept(stream, peer).await
    }
}
