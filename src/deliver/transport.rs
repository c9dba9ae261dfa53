//! The connection under the stream engine: plaintext TCP, or TLS over it
//! (rustls), with the same two cancel-safe operations, so the engine does not
//! care which:
//!
//! - [`Transport::write_some`]: wait until the socket takes bytes, then hand
//!   it some of the given slices and say how many of their bytes are now
//!   the kernel's. For TLS, a byte counts only once the records that carry it
//!   left rustls for the kernel: what rustls still holds when the connection
//!   dies is not counted, so the engine sends it again on the next
//!   connection (at least once, as in plaintext).
//! - [`Transport::watch_close`]: resolve when the peer closes or resets the
//!   connection. Carbon receivers send nothing; what a TLS peer sends
//!   (session tickets, key updates) is taken in and ignored.
//!
//! Both only ever await socket readiness; every change of state happens
//! synchronously after it, so dropping either future at any await loses
//! nothing and writes nothing twice. The TLS session sits behind a mutex
//! that is never held across an await (the engine polls both futures from
//! one task).
//!
//! Imports nothing of the crate outside `deliver`.

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use tokio::net::TcpStream;

/// How to speak TLS to a destination.
#[derive(Clone)]
pub struct TlsConnect {
    pub config: Arc<rustls::ClientConfig>,
    /// Checked against the certificate, and sent as SNI.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnect")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// An open connection to a destination.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

pub(crate) struct TlsConn {
    tcp: TcpStream,
    session: Mutex<Session>,
}

struct Session {
    conn: ClientConnection,
    /// Bytes of the caller's slices handed to rustls and not yet reported:
    /// their records have not all reached the kernel.
    pending: usize,
}

/// Reads and writes a `TcpStream` through `&`, as rustls's sync calls need.
struct Io<'a>(&'a TcpStream);

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn timed_out(what: &str, after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out after {after:?}"),
    )
}

impl Transport {
    /// Connect to `addr` (resolved now) within `timeout`, TLS handshake
    /// included.
    pub async fn connect(
        addr: &str,
        tls: Option<&TlsConnect>,
        timeout: Duration,
    ) -> io::Result<Transport> {
        let deadline = tokio::time::Instant::now() + timeout;
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connect", timeout))??;
        // Entries go out whole in vectored writes: Nagle would only hold
        // back the tail of each.
        let _ = tcp.set_nodelay(true);
        let Some(t) = tls else {
            return Ok(Transport::Plain(tcp));
        };
        let connector = tokio_rustls::TlsConnector::from(t.config.clone());
        let stream =
            tokio::time::timeout_at(deadline, connector.connect(t.server_name.clone(), tcp))
                .await
                .map_err(|_| timed_out("TLS handshake", timeout))??;
        let (tcp, conn) = stream.into_inner();
        Ok(Transport::Tls(Box::new(TlsConn {
            tcp,
            session: Mutex::new(Session { conn, pending: 0 }),
        })))
    }

    /// Wait until the socket takes bytes, then write some of `slices`;
    /// returns how many of their bytes the kernel now has (see the module
    /// doc). Errs if the peer is gone.
    pub async fn write_some(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => {
                let mut scratch = [0u8; 512];
                loop {
                    s.writable().await?;
                    // Free unless the socket is readable, which on these
                    // connections means the peer is gone: then write
                    // nothing into it.
                    check_open(s, &mut scratch)?;
                    match s.try_write_vectored(slices) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => return r,
                    }
                }
            }
            Transport::Tls(t) => loop {
                t.tcp.writable().await?;
                let mut s = t.session.lock().unwrap_or_else(|e| e.into_inner());
                take_in(&t.tcp, &mut s.conn)?;
                // Records rustls holds go first.
                while s.conn.wants_write() {
                    match s.conn.write_tls(&mut Io(&t.tcp)) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                if s.conn.wants_write() {
                    continue;
                }
                if s.pending > 0 {
                    return Ok(std::mem::take(&mut s.pending));
                }
                let n = s.conn.writer().write_vectored(slices)?;
                if n == 0 {
                    return Ok(0);
                }
                s.pending = n;
                // Flushed on the next turn: the socket may take it now.
            },
        }
    }

    /// Resolve when the peer closes (`None`) or resets (`Some`) the
    /// connection.
    pub async fn watch_close(&self) -> Option<io::Error> {
        let tcp = match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.tcp,
        };
        let mut buf = [0u8; 1024];
        loop {
            if let Err(e) = tcp.readable().await {
                return Some(e);
            }
            match self {
                Transport::Plain(s) => match s.try_read(&mut buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Some(e),
                },
                Transport::Tls(t) => {
                    let mut s = t.session.lock().unwrap_or_else(|e| e.into_inner());
                    match take_in(&t.tcp, &mut s.conn) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
                        Err(e) => return Some(e),
                    }
                }
            }
        }
    }

    /// Say goodbye: TLS close_notify (best effort) and our FIN, so the
    /// receiver sees a clean end of stream.
    pub async fn shutdown(self) {
        use tokio::io::AsyncWriteExt;
        match self {
            Transport::Plain(mut s) => {
                let _ = s.shutdown().await;
            }
            Transport::Tls(t) => {
                let TlsConn { mut tcp, session } = *t;
                let mut s = session.into_inner().unwrap_or_else(|e| e.into_inner());
                s.conn.send_close_notify();
                while s.conn.wants_write() {
                    if tcp.writable().await.is_err() {
                        break;
                    }
                    match s.conn.write_tls(&mut Io(&tcp)) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
                let _ = tcp.shutdown().await;
            }
        }
    }
}

/// Take in what the TLS peer sent (without waiting), and drop its plaintext.
/// `UnexpectedEof` when it closed.
fn take_in(tcp: &TcpStream, conn: &mut ClientConnection) -> io::Result<()> {
    let mut plain = [0u8; 1024];
    loop {
        match conn.read_tls(&mut Io(tcp)) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                loop {
                    match conn.reader().read(&mut plain) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Err if the peer has closed or reset the connection. Anything it sent is
/// read and ignored.
fn check_open(stream: &TcpStream, scratch: &mut [u8]) -> io::Result<()> {
    loop {
        match stream.try_read(scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "closed by the destination",
                ))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
