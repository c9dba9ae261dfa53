//! The UDP sender: one thread per socket, each walking the precomputed pool
//! with `sendmmsg` so that one system call carries a whole batch of datagrams.
//!
//! Imports nothing of the library.

use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::workload::Pool;

/// What one sender thread does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Datagrams to attempt; `None` sends until `until`.
    pub packets: Option<u64>,
    /// Stop at this instant, whatever `packets` says.
    pub until: Option<Instant>,
    /// Pace to this many datagrams per second; 0 is as fast as possible.
    pub packets_per_sec: f64,
    /// Datagrams per `sendmmsg` call at most.
    pub batch: usize,
    /// Where in the pool this thread starts, so that threads do not send the
    /// same keys in lockstep.
    pub first_packet: usize,
}

/// What one sender thread did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// Datagrams the kernel accepted.
    pub packets: u64,
    /// Lines in them.
    pub lines: u64,
    /// Counter lines in them (each adds exactly 1 to a counter).
    pub counter_lines: u64,
    pub bytes: u64,
    /// Datagrams the kernel refused (e.g. `ECONNREFUSED` after an ICMP
    /// unreachable, `ENOBUFS`); they are skipped, not counted as sent.
    pub errors: u64,
    /// The first such error, for the report.
    pub first_error: Option<String>,
}

impl Sent {
    /// Add another thread's totals.
    pub fn add(&mut self, other: &Sent) {
        self.packets += other.packets;
        self.lines += other.lines;
        self.counter_lines += other.counter_lines;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// A UDP socket connected to `target`, with a large send buffer so that a
/// burst of batches never blocks on it.
pub fn connect(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(target), Type::DGRAM, None)?;
    // Best effort: the kernel caps it at wmem_max, and the default also works.
    let _ = socket.set_send_buffer_size(4 << 20);
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    socket.bind(&local.into())?;
    socket.connect(&target.into())?;
    Ok(socket.into())
}

/// `sendmmsg` headers for every datagram of a pool, built once per thread so
/// that the send loop does no work per datagram.
struct Headers<'a> {
    hdrs: Vec<libc::mmsghdr>,
    /// What `hdrs` point at. A boxed slice is never reallocated, so the
    /// pointers stay valid for as long as `self` lives.
    _iovecs: Box<[libc::iovec]>,
    /// The bytes the iovecs point at are borrowed from the pool.
    _pool: PhantomData<&'a Pool>,
}

impl<'a> Headers<'a> {
    fn new(pool: &'a Pool) -> Headers<'a> {
        let base = pool.bytes.as_ptr();
        let iovecs: Box<[libc::iovec]> = pool
            .packets
            .iter()
            .map(|p| libc::iovec {
                // `wrapping_add` keeps this safe; `start` is inside `bytes` by
                // construction of the pool. The kernel only reads through it
                // (sendmmsg), so the `*mut` cast does not permit a write.
                iov_base: base.wrapping_add(p.start) as *mut libc::c_void,
                iov_len: p.len,
            })
            .collect();
        let hdrs = iovecs
            .iter()
            .map(|iov| {
                // SAFETY: mmsghdr is a plain C struct of integers and raw
                // pointers, for which all-zero bytes are a valid value
                // (null name, null control, no flags).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov as *const libc::iovec as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Headers {
            hdrs,
            _iovecs: iovecs,
            _pool: PhantomData,
        }
    }

    /// Send datagrams `from..from + count` (clamped to the pool) on a
    /// connected socket; returns how many the kernel took.
    fn send(&mut self, socket: &UdpSocket, from: usize, count: usize) -> io::Result<usize> {
        let end = from.saturating_add(count).min(self.hdrs.len());
        let slice = match self.hdrs.get_mut(from..end) {
            Some(s) if !s.is_empty() => s,
            _ => return Ok(0),
        };
        // The count fits: a batch is at most a few thousand headers.
        let vlen = u32::try_from(slice.len()).unwrap_or(u32::MAX);
        // SAFETY: `slice` is `vlen` valid, exclusively borrowed headers (the
        // kernel writes their `msg_len`); each points at one iovec in
        // `self._iovecs` and through it at bytes of the pool, both alive for
        // `'a` (longer than this call). `msg_name` is null, which is what a
        // connected socket needs. The fd is open while `socket` is borrowed.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), slice.as_mut_ptr(), vlen, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            // Non-negative and at most `vlen`, so it fits in usize.
            Ok(n as usize)
        }
    }
}

/// Send according to `plan`, starting now. Blocks until done.
pub fn run(pool: &Pool, socket: &UdpSocket, plan: &Plan) -> Sent {
    let mut headers = Headers::new(pool);
    let n = pool.packets.len();
    let lpp = pool.lines_per_packet as u64;
    let mut sent = Sent::default();
    let mut attempted: u64 = 0;
    let mut idx = plan.first_packet % n.max(1);
    // Paced sending uses batches of about a millisecond of traffic so that
    // sleeping between them does not turn the stream into bursts.
    let batch = if plan.packets_per_sec > 0.0 {
        ((plan.packets_per_sec / 1000.0) as usize).clamp(1, plan.batch.max(1))
    } else {
        plan.batch.max(1)
    };
    let start = Instant::now();
    loop {
        let left = plan
            .packets
            .map_or(u64::MAX, |p| p.saturating_sub(attempted));
        if left == 0 || n == 0 {
            break;
        }
        let now = Instant::now();
        if plan.until.is_some_and(|u| now >= u) {
            break;
        }
        if plan.packets_per_sec > 0.0 {
            let due = start + Duration::from_secs_f64(attempted as f64 / plan.packets_per_sec);
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // Bounded by `batch`, so it fits in usize.
        let want = (left.min(batch as u64) as usize).min(n - idx);
        match headers.send(socket, idx, want) {
            Ok(k) => {
                for p in &pool.packets[idx..idx + k] {
                    sent.bytes += p.len as u64;
                    sent.counter_lines += u64::from(p.counters);
                }
                sent.packets += k as u64;
                sent.lines += k as u64 * lpp;
                attempted += k as u64;
                idx += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The first datagram of the batch was refused: skip it so
                // that a persistent error cannot stall the run.
                sent.errors += 1;
                if sent.first_error.is_none() {
                    sent.first_error = Some(e.to_string());
                }
                attempted += 1;
                idx += 1;
            }
        }
        if idx >= n {
            idx = 0;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Pool, PoolSpec};

    fn pool(keys: usize, lpp: usize) -> Pool {
        Pool::build(&PoolSpec {
            prefix: "t".into(),
            keys,
            lines_per_packet: lpp,
            mix: "c=1".parse().unwrap(),
            tag_share: 0.0,
            seed: 3,
        })
        .unwrap()
    }

    /// Over loopback every datagram sent arrives, byte for byte and in order.
    #[test]
    fn sends_pool_packets_in_order_and_wraps() {
        let pool = pool(10, 2);
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let socket = connect(rx.local_addr().unwrap()).unwrap();
        let n = pool.packets.len() as u64;
        // (packets to send, first packet, batch)
        let cases = [
            (3u64, 0usize, 64usize),
            (5, pool.packets.len() - 2, 2),
            (7, 1, 1),
        ];
        for (count, first, batch) in cases {
            let plan = Plan {
                packets: Some(count),
                until: None,
                packets_per_sec: 0.0,
                batch,
                first_packet: first,
            };
            let sent = run(&pool, &socket, &plan);
            assert_eq!(sent.packets, count);
            assert_eq!(sent.lines, count * 2);
            assert_eq!(sent.counter_lines, count * 2);
            assert_eq!(sent.errors, 0);
            let mut buf = [0u8; 2048];
            for i in 0..count {
                let len = rx.recv(&mut buf).unwrap();
                let p = &pool.packets[((first as u64 + i) % n) as usize];
                assert_eq!(
                    &buf[..len],
                    pool.packet(p),
                    "case {count}/{first}/{batch} #{i}"
                );
            }
        }
    }

    #[test]
    fn pacing_holds_the_rate() {
        let pool = pool(10, 1);
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = connect(rx.local_addr().unwrap()).unwrap();
        let plan = Plan {
            packets: Some(200),
            until: None,
            packets_per_sec: 1000.0,
            batch: 64,
            first_packet: 0,
        };
        let t = Instant::now();
        let sent = run(&pool, &socket, &plan);
        let took = t.elapsed();
        assert_eq!(sent.packets, 200);
        // 200 datagrams at 1000/s: the last one is due at 199 ms.
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[test]
    fn deadline_stops_an_unbounded_run() {
        let pool = pool(10, 1);
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = connect(rx.local_addr().unwrap()).unwrap();
        let plan = Plan {
            packets: None,
            until: Some(Instant::now() + Duration::from_millis(50)),
            packets_per_sec: 10_000.0,
            batch: 64,
            first_packet: 0,
        };
        let sent = run(&pool, &socket, &plan);
        assert!(
            sent.packets > 100 && sent.packets < 1500,
            "{}",
            sent.packets
        );
    }
}
