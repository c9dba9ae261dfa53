//! UDP: dedicated receive threads, not one tokio wake-up per datagram.
//!
//! Each configured address gets `udp_threads` sockets bound with SO_REUSEPORT
//! (the kernel spreads senders across them), and each socket one thread that
//! reads up to `udp_batch` datagrams per `recvmmsg` call and parses them
//! straight out of its receive slots into its own shard.
//!
//! A panic while one datagram is parsed and aggregated is caught around that
//! datagram ([`crate::supervise::catch`]): the datagram is lost, counted in
//! the thread's `task_restarts` and logged, and the thread goes on with the
//! same socket and the same shard (whose lock a panic may have poisoned;
//! every user of it takes the data anyway, which is still whole).
//!
//! Imports, besides `listener` itself: `gate`, `shutdown`, `stats`,
//! `supervise`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Ingest, LogLimiter};
use crate::gate::Gate;
use crate::shutdown::CancellationToken;
use crate::stats::TaskStats;

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

/// Bind `threads` sockets on `addr`. With port 0, the first socket picks the
/// port and the others join it, so all of them share one address.
pub fn bind_group(
    addr: SocketAddr,
    threads: usize,
    recv_buffer: Option<usize>,
) -> io::Result<Vec<UdpSocket>> {
    let first = bind(addr, recv_buffer)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..threads.max(1) {
        sockets.push(bind(bound, recv_buffer)?);
    }
    Ok(sockets)
}

fn set_recv_buffer(socket: &Socket, addr: SocketAddr, want: usize) {
    // With CAP_NET_ADMIN, SO_RCVBUFFORCE grants the size even above
    // net.core.rmem_max; without it, fall back to SO_RCVBUF, which the kernel
    // caps (and the read-back below reports).
    if !force_recv_buffer(socket, want) {
        if let Err(e) = socket.set_recv_buffer_size(want) {
            tracing::warn!(%addr, want, error = %e, "cannot set the UDP receive buffer");
            return;
        }
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

/// SO_RCVBUFFORCE; false when not permitted or not available.
#[cfg(target_os = "linux")]
fn force_recv_buffer(socket: &Socket, want: usize) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(val) = libc::c_int::try_from(want) else {
        return false;
    };
    // SAFETY: a valid socket descriptor, and a pointer to a live c_int with
    // its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn force_recv_buffer(_: &Socket, _: usize) -> bool {
    false
}

/// The socket's inode, which names it in /proc/net/udp (for its drop counter).
pub fn inode(socket: &UdpSocket) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        // Duplicate the descriptor into a File only to read its metadata; the
        // duplicate closes when the File drops, the socket stays open.
        let fd = socket.as_fd().try_clone_to_owned().ok()?;
        let meta = std::fs::File::from(fd).metadata().ok()?;
        use std::os::unix::fs::MetadataExt;
        Some(meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = socket;
        None
    }
}

/// How long a receive thread that drained its socket (a partial batch) waits
/// before reading again. Without the pause, a thread that reads faster than
/// its senders send sleeps and wakes for nearly every datagram; with it, each
/// wake-up reads a fuller batch. At W1 this cut server CPU per line by about
/// a fifth (docs/benchmarks.md, 2026-12-04); 250 and 500 µs measured no
/// better. 100 µs of traffic is far below any receive buffer, even the
/// kernel's 208 KiB default, so the pause costs no drops, and statsd data
/// waits a flush interval anyway.
const COALESCE: Duration = Duration::from_micros(100);

/// One listener thread's per-datagram work, guarded against panics.
struct Guarded<H> {
    handle: H,
    task: Arc<TaskStats>,
    log: LogLimiter,
}

impl<H: FnMut(&[u8], Option<SocketAddr>)> Guarded<H> {
    fn packet(&mut self, d: &[u8], from: Option<SocketAddr>) {
        let handle = &mut self.handle;
        crate::supervise::catch(&self.task, "a UDP datagram", &mut self.log, || {
            handle(d, from)
        });
    }
}

/// Start the receive thread for `socket`. It returns once `token` is cancelled
/// and the datagrams already queued in the kernel have been processed. A
/// panic in one datagram's work is counted in `task` and the thread goes on.
///
/// A datagram from a source outside `gate`'s allow-list is dropped and
/// counted there (`refused_by_allow`), before it is parsed.
pub fn spawn(
    socket: UdpSocket,
    mut ingest: Ingest,
    gate: Arc<Gate>,
    token: CancellationToken,
    batch: usize,
    task: Arc<TaskStats>,
) -> io::Result<JoinHandle<()>> {
    spawn_with(
        socket,
        move |d, from| {
            if from.is_none_or(|a| gate.admits(a.ip())) {
                ingest.packet_from(d, from)
            }
        },
        token,
        batch,
        task,
    )
}

/// [`spawn`] with `handle` doing each datagram's work.
fn spawn_with<H: FnMut(&[u8], Option<SocketAddr>) + Send + 'static>(
    socket: UdpSocket,
    handle: H,
    token: CancellationToken,
    batch: usize,
    task: Arc<TaskStats>,
) -> io::Result<JoinHandle<()>> {
    let addr = socket.local_addr()?;
    let mut ingest = Guarded {
        handle,
        task,
        log: LogLimiter::new(10, Duration::from_secs(10)),
    };
    std::thread::Builder::new()
        .name(format!("udp-recv {addr}"))
        .spawn(move || {
            let mut rx = Receiver::new(batch);
            while !token.is_cancelled() {
                match rx.recv(&socket, |d, from| ingest.packet(d, from)) {
                    // A partial batch means the socket is drained: let the
                    // next datagrams gather for a moment rather than wake
                    // up for each one as it arrives.
                    Ok(n) if n < batch && !COALESCE.is_zero() => std::thread::sleep(COALESCE),
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => {
                        // ICMP errors from earlier sends and the like: not fatal.
                        tracing::debug!(%addr, error = %e, "udp receive error");
                    }
                }
            }
            drain(&socket, &mut rx, &mut ingest, addr);
        })
}

/// Everything the kernel accepted before shutdown was "received": process it.
fn drain<H: FnMut(&[u8], Option<SocketAddr>)>(
    socket: &UdpSocket,
    rx: &mut Receiver,
    ingest: &mut Guarded<H>,
    addr: SocketAddr,
) {
    if let Err(e) = socket.set_nonblocking(true) {
        tracing::warn!(%addr, error = %e, "cannot drain the UDP socket at shutdown");
        return;
    }
    let mut drained = 0usize;
    loop {
        match rx.recv(socket, |d, from| ingest.packet(d, from)) {
            Ok(n) => drained += n,
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

/// Receive slots for one thread: `recvmmsg` on Linux, `recv` elsewhere.
pub struct Receiver {
    #[cfg(target_os = "linux")]
    mmsg: linux::Batch,
    #[cfg(not(target_os = "linux"))]
    buf: Vec<u8>,
}

impl Receiver {
    /// Room for `batch` datagrams of up to [`MAX_DATAGRAM`] bytes each.
    pub fn new(batch: usize) -> Receiver {
        #[cfg(target_os = "linux")]
        {
            Receiver {
                mmsg: linux::Batch::new(batch.max(1)),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = batch;
            Receiver {
                buf: vec![0; MAX_DATAGRAM],
            }
        }
    }

    /// Wait (up to the socket's read timeout) for at least one datagram, then
    /// hand each one available, up to the batch size, to `each` with its
    /// sender. Returns how many were read.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(&[u8], Option<SocketAddr>),
    ) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            self.mmsg.recv(socket, &mut each)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (n, from) = socket.recv_from(&mut self.buf)?;
            each(&self.buf[..n], Some(from));
            Ok(1)
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::MAX_DATAGRAM;

    /// One slot per datagram. Slots hold a whole 64 KiB datagram, so nothing
    /// is ever truncated.
    const SLOT: usize = MAX_DATAGRAM + 1;

    /// The buffers and headers of one `recvmmsg` call. The headers point into
    /// `iovecs`, which point into `bufs`; none of the three is ever resized
    /// after `new`, so the pointers stay valid for the struct's life.
    pub struct Batch {
        bufs: Vec<u8>,
        iovecs: Vec<libc::iovec>,
        msgs: Vec<libc::mmsghdr>,
        /// Each datagram's sender (the headers point here too).
        names: Vec<libc::sockaddr_storage>,
    }

    // The raw pointers only ever point into the struct's own heap buffers.
    unsafe impl Send for Batch {}

    impl Batch {
        pub fn new(n: usize) -> Batch {
            let mut bufs = vec![0u8; n * SLOT];
            // SAFETY: sockaddr_storage is a plain C struct; all-zero is valid.
            let mut names = vec![unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }; n];
            let mut iovecs: Vec<libc::iovec> = (0..n)
                .map(|i| libc::iovec {
                    // In bounds: slot i starts at i * SLOT < n * SLOT.
                    iov_base: bufs[i * SLOT..].as_mut_ptr().cast(),
                    iov_len: SLOT,
                })
                .collect();
            let msgs = (0..n)
                .map(|i| {
                    // SAFETY: mmsghdr is a plain C struct; all-zero is a valid
                    // value (null name and control, no flags).
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = &mut iovecs[i];
                    m.msg_hdr.msg_iovlen = 1;
                    m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                    m
                })
                .collect();
            Batch {
                bufs,
                iovecs,
                msgs,
                names,
            }
        }

        pub fn recv(
            &mut self,
            socket: &UdpSocket,
            each: &mut dyn FnMut(&[u8], Option<SocketAddr>),
        ) -> io::Result<usize> {
            for m in &mut self.msgs {
                // The kernel writes each sender's length here: room for any.
                m.msg_hdr.msg_namelen = NAME_LEN;
            }
            // SAFETY: `msgs` holds `len` initialised headers whose iovecs point
            // at `SLOT`-byte regions of `bufs`, all alive and exclusively
            // borrowed for the call. MSG_WAITFORONE blocks (up to SO_RCVTIMEO)
            // for the first datagram only, then takes what is queued.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    self.msgs.len() as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for i in 0..n {
                let len = (self.msgs[i].msg_len as usize).min(SLOT);
                let from = sender(&self.names[i], self.msgs[i].msg_hdr.msg_namelen);
                each(&self.bufs[i * SLOT..i * SLOT + len], from);
            }
            debug_assert_eq!(self.iovecs.len(), self.msgs.len());
            Ok(n)
        }
    }

    const NAME_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as _;

    /// The sender `recvmmsg` wrote into `name` (`len` bytes of it).
    fn sender(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match name.ss_family as libc::c_int {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in (its family says so),
                // and sockaddr_storage is large and aligned enough for one.
                let a = unsafe {
                    &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for a sockaddr_in6.
                let a = unsafe {
                    &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_receive_reads_every_datagram_whole() {
        let sock = bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let to = sock.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'x'; 60_000];
        let msgs: Vec<Vec<u8>> = vec![b"a:1|c".to_vec(), big.clone(), b"b:2|c".to_vec()];
        for m in &msgs {
            tx.send_to(m, to).unwrap();
        }
        let mut rx = Receiver::new(2);
        let mut got = Vec::new();
        while got.len() < msgs.len() {
            rx.recv(&sock, |d, from| {
                assert_eq!(from, tx.local_addr().ok());
                got.push(d.to_vec())
            })
            .unwrap();
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn a_panic_in_one_datagram_costs_that_datagram_only() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let sock = bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let to = sock.local_addr().unwrap();
        let task = Arc::new(TaskStats {
            name: "udp/test".into(),
            restarts: AtomicU64::new(0),
        });
        let good = Arc::new(AtomicU64::new(0));
        let g = good.clone();
        let token = CancellationToken::new();
        let thread = spawn_with(
            sock,
            move |d, _| {
                if d == b"boom" {
                    panic!("a datagram that panics");
                }
                g.fetch_add(1, Ordering::Relaxed);
            },
            token.clone(),
            4,
            task.clone(),
        )
        .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for m in [&b"a:1|c"[..], b"boom", b"b:1|c", b"boom", b"c:1|c"] {
            tx.send_to(m, to).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while good.load(Ordering::Relaxed) < 3 {
            assert!(std::time::Instant::now() < deadline, "the thread goes on");
            std::thread::sleep(Duration::from_millis(10));
        }
        token.cancel();
        thread.join().expect("the receive thread ends normally");
        assert_eq!(good.load(Ordering::Relaxed), 3);
        assert_eq!(crate::stats::get(&task.restarts), 2);
    }

    #[test]
    fn reuseport_group_shares_one_port() {
        let socks = bind_group("127.0.0.1:0".parse().unwrap(), 3, None).unwrap();
        let port = socks[0].local_addr().unwrap().port();
        assert!(socks.iter().all(|s| s.local_addr().unwrap().port() == port));
        assert!(inode(&socks[0]).is_some());
        assert_ne!(inode(&socks[0]), inode(&socks[1]));
    }
}
