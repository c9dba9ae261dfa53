//! UDP: one dedicated receive thread per socket, not one tokio wake-up per
//! datagram. Each thread parses straight out of its receive buffer into its
//! own shard.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::Ingest;
use crate::shutdown::CancellationToken;

/// Largest UDP payload (IPv6 jumbograms aside): 65,535 minus the 8-byte UDP header.
pub const MAX_DATAGRAM: usize = 65_535;

/// How often an idle receive thread looks at the shutdown token.
const POLL: Duration = Duration::from_millis(100);

/// Bind a UDP socket with SO_REUSEADDR/SO_REUSEPORT and, when asked, a larger
/// SO_RCVBUF. Warns when the kernel grants less than was asked for.
pub fn bind(addr: SocketAddr, recv_buffer: Option<usize>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` means IPv6 only; add `0.0.0.0` for IPv4, so both can be bound
        // to the same port without surprise.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    if let Some(want) = recv_buffer {
        set_recv_buffer(&socket, addr, want);
    }
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket.into())
}

fn set_recv_buffer(socket: &Socket, addr: SocketAddr, want: usize) {
    if let Err(e) = socket.set_recv_buffer_size(want) {
        tracing::warn!(%addr, want, error = %e, "cannot set the UDP receive buffer");
        return;
    }
    // Linux doubles the requested value for its own bookkeeping and caps the
    // request at net.core.rmem_max; reading it back tells which happened.
    match socket.recv_buffer_size() {
        Ok(got) if got < want => tracing::warn!(
            %addr,
            want,
            got,
            "the kernel capped the UDP receive buffer; raise net.core.rmem_max to avoid drops under bursts"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(%addr, error = %e, "cannot read back the UDP receive buffer"),
    }
}

/// Start the receive thread for `socket`. It returns once `token` is cancelled
/// and the datagrams already queued in the kernel have been processed.
pub fn spawn(
    socket: UdpSocket,
    mut ingest: Ingest,
    token: CancellationToken,
) -> io::Result<JoinHandle<()>> {
    let addr = socket.local_addr()?;
    std::thread::Builder::new()
        .name(format!("udp-recv {addr}"))
        .spawn(move || {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while !token.is_cancelled() {
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) => ingest.packet(&buf[..n]),
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => {
                        // ICMP errors from earlier sends and the like: not fatal.
                        tracing::debug!(%addr, error = %e, "udp receive error");
                    }
                }
            }
            drain(&socket, &mut buf, &mut ingest, addr);
        })
}

/// Everything the kernel accepted before shutdown was "received": process it.
fn drain(socket: &UdpSocket, buf: &mut [u8], ingest: &mut Ingest, addr: SocketAddr) {
    if let Err(e) = socket.set_nonblocking(true) {
        tracing::warn!(%addr, error = %e, "cannot drain the UDP socket at shutdown");
        return;
    }
    let mut drained = 0u64;
    loop {
        match socket.recv_from(buf) {
            Ok((n, _)) => {
                ingest.packet(&buf[..n]);
                drained += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => break,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "udp receive error while draining");
                break;
            }
        }
    }
    tracing::debug!(%addr, drained, "udp listener stopped");
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
