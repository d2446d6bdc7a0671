//! The SIP UDP socket, with the kernel's receive timestamp on every datagram.
//!
//! acd's admission gate measures how long a request waited for the daemon
//! loop (`sip.overload_queue_delay_ms`), but under a burst the first queue is
//! the socket's receive buffer: a datagram can wait there, or be dropped,
//! before rsipstack reads it, and nothing above the socket can see that.
//! Here each datagram is read with `recvmsg` and two control messages the
//! kernel adds on request:
//!
//! - `SO_TIMESTAMPNS`: the wall-clock time the datagram reached the socket;
//!   the time from then to the read is recorded in
//!   `acd_sip_socket_wait_seconds` (a histogram);
//! - `SO_RXQ_OVFL`: the socket's running count of datagrams the kernel
//!   dropped because the buffer was full, exported as
//!   `acd_sip_socket_drops_total`.
//!
//! rsipstack takes any [`rsipstack::platform::net::UdpSocket`], so this
//! needs no patch to the stack: it is the socket acd hands to
//! `UdpConnection::from_socket`. Linux only (as acd is).

use metrics::{Counter, Histogram};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::Interest;

pub const SOCKET_WAIT: &str = "acd_sip_socket_wait_seconds";
pub const SOCKET_DROPS: &str = "acd_sip_socket_drops_total";
/// From 0.1 ms (a datagram read at once) to the 2 s no request should wait.
pub const SOCKET_WAIT_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];

pub fn describe() {
    metrics::describe_histogram!(
        SOCKET_WAIT,
        metrics::Unit::Seconds,
        "How long SIP datagrams waited in the UDP socket's receive buffer before the stack read them (kernel receive timestamp to read)"
    );
    metrics::describe_counter!(
        SOCKET_DROPS,
        "SIP datagrams the kernel dropped because the UDP socket's receive buffer was full (SO_RXQ_OVFL)"
    );
}

/// How long the datagram read most recently from the endpoint's UDP
/// sockets waited in the kernel's receive buffer. Shared by the sockets
/// (which store it on each read) and the adapter, which counts it into a
/// request's `queued_for`: under overload datagrams queue in the kernel
/// before acd sees them (measured: p99 50-100 ms at 1,500-3,000 calls/s
/// on a loaded machine), so an admission gate that saw only the in-process
/// queue would let calls in that had already waited too long.
#[derive(Clone, Debug, Default)]
pub struct SocketWait(Arc<AtomicU64>);

impl SocketWait {
    /// The wait of the datagram read last (zero before the first, or when
    /// the kernel gives no timestamp).
    pub fn latest(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    fn store(&self, waited: Duration) {
        self.0.store(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// A tokio UDP socket whose reads record the kernel's receive timestamp and
/// drop count.
pub struct TimedUdpSocket {
    inner: tokio::net::UdpSocket,
    wait: SocketWait,
    /// The `listen` label. The metric handles are looked up on each read,
    /// not kept: the daemon builds its sockets before it installs the
    /// exporter, and a handle taken then would record nowhere. Leaked once
    /// per socket so the lookup allocates nothing.
    listen: &'static str,
}

impl TimedUdpSocket {
    /// Turns the kernel's timestamps and drop counts on for `inner`. A
    /// kernel that refuses either leaves that figure out; reads still work.
    pub fn new(inner: tokio::net::UdpSocket, wait: SocketWait) -> Self {
        let local = inner.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let fd = inner.as_raw_fd();
        for (name, opt) in [("SO_TIMESTAMPNS", libc::SO_TIMESTAMPNS), ("SO_RXQ_OVFL", libc::SO_RXQ_OVFL)] {
            if let Err(e) = set_flag(fd, opt) {
                tracing::warn!(%local, error = %e, "cannot set {name} on the SIP socket: its figure is not measured");
            }
        }
        Self { inner, wait, listen: Box::leak(local.into_boxed_str()) }
    }

    fn wait(&self) -> Histogram {
        metrics::histogram!(SOCKET_WAIT, "listen" => self.listen)
    }

    fn drops(&self) -> Counter {
        metrics::counter!(SOCKET_DROPS, "listen" => self.listen)
    }

    /// Makes both series exist before the first datagram (a dashboard shows
    /// 0, not "no data"): called by the shell once the exporter is in.
    pub fn register(listen: SocketAddr) {
        let listen = listen.to_string();
        metrics::counter!(SOCKET_DROPS, "listen" => listen.clone()).absolute(0);
        let _ = metrics::histogram!(SOCKET_WAIT, "listen" => listen);
    }
}

#[allow(unsafe_code)] // setsockopt: no safe wrapper for these two options
fn set_flag(fd: libc::c_int, opt: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket owned by the caller; the option value
    // is a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram and what the kernel said about it.
#[derive(Debug, PartialEq)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// When the datagram reached the socket (wall clock).
    pub arrived: Option<SystemTime>,
    /// The socket's drop count when this datagram was queued; the kernel
    /// sends it only once something was dropped.
    pub drops: Option<u32>,
}

/// Control buffer: room for a timespec and a u32, each behind a cmsghdr,
/// 8-aligned as `CMSG_*` need.
#[repr(C, align(8))]
struct Control([u8; 128]);

/// One `recvmsg` without blocking (`MSG_DONTWAIT`), reading the control
/// messages asked for by [`TimedUdpSocket::new`].
#[allow(unsafe_code)] // recvmsg with control messages: neither tokio nor socket2 reads them
pub fn recv_timed(fd: libc::c_int, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: every pointer handed to recvmsg points into a local that
    // outlives the call (`buf`, `name`, `control`), with its true length;
    // the CMSG_* walk stays within `msg_controllen` as the kernel set it.
    unsafe {
        let mut name = socket2::SockAddrStorage::zeroed();
        let mut control = Control([0; 128]);
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_namelen = name.size_of();
        msg.msg_name = (&mut name as *mut socket2::SockAddrStorage).cast();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let from = socket2::SockAddr::new(name, msg.msg_namelen)
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address"))?;
        let mut arrived = None;
        let mut drops = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let data = libc::CMSG_DATA(cmsg);
            if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                arrived = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            } else if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL {
                drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(Received { len: n as usize, from, arrived, drops })
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for TimedUdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let fd = self.inner.as_raw_fd();
        let got = self.inner.async_io(Interest::READABLE, || recv_timed(fd, buf)).await?;
        if let Some(arrived) = got.arrived {
            // A clock step backwards makes this negative: left out.
            if let Ok(waited) = SystemTime::now().duration_since(arrived) {
                self.wait().record(waited.as_secs_f64());
                self.wait.store(waited);
            }
        }
        if let Some(d) = got.drops {
            self.drops().absolute(u64::from(d));
        }
        Ok((got.len, got.from))
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.inner.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.inner.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (a, b)
    }

    #[test]
    fn a_datagram_carries_the_time_it_reached_the_socket_and_its_sender() {
        let (rx, tx) = pair();
        set_flag(rx.as_raw_fd(), libc::SO_TIMESTAMPNS).unwrap();
        // The kernel turns receive timestamping on for the whole stack
        // through deferred work; until it has run, a datagram is stamped
        // when it is read instead. So up to five tries, each waiting 30 ms
        // in the buffer: one must show the wait.
        let mut waits = Vec::new();
        for _ in 0..5 {
            let before = SystemTime::now();
            tx.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", rx.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            let mut buf = [0u8; 1500];
            let got = recv_timed(rx.as_raw_fd(), &mut buf).unwrap();
            let read_at = SystemTime::now();
            assert_eq!(&buf[..got.len], b"OPTIONS sip:x SIP/2.0\r\n\r\n");
            assert_eq!(got.from, tx.local_addr().unwrap());
            let arrived = got.arrived.expect("the kernel's timestamp");
            assert!(arrived >= before - Duration::from_millis(5), "{arrived:?} before the send {before:?}");
            let waited = read_at.duration_since(arrived).unwrap();
            // The timestamp is the arrival, not the read.
            if waited >= Duration::from_millis(25) {
                return;
            }
            waits.push(waited);
        }
        panic!("no datagram showed its 30 ms in the buffer: {waits:?}");
    }

    #[test]
    fn without_the_option_there_is_no_timestamp_and_an_empty_socket_would_block() {
        let (rx, tx) = pair();
        let mut buf = [0u8; 64];
        let e = recv_timed(rx.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        let got = recv_timed(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((got.len, got.arrived, got.drops), (1, None, None));
    }

    #[test]
    fn a_full_buffer_reports_how_many_datagrams_the_kernel_dropped() {
        let (rx, tx) = pair();
        set_flag(rx.as_raw_fd(), libc::SO_RXQ_OVFL).unwrap();
        // The smallest buffer the kernel allows (it doubles and floors it):
        // a few KB, so 2,000 datagrams of 1 KB overflow it.
        let rx = socket2::Socket::from(rx);
        rx.set_recv_buffer_size(1).unwrap();
        let rx: std::net::UdpSocket = rx.into();
        let to = rx.local_addr().unwrap();
        for _ in 0..2000 {
            tx.send_to(&[b'x'; 1000], to).unwrap();
        }
        // The count is stamped on a datagram when it is queued: the ones
        // queued before the drops carry none. Drain them; the next one
        // carries it.
        let mut buf = [0u8; 1500];
        while recv_timed(rx.as_raw_fd(), &mut buf).is_ok() {}
        tx.send_to(b"after", to).unwrap();
        let got = recv_timed(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"after");
        let dropped = got.drops.expect("the kernel's drop count");
        assert!(dropped > 1000, "dropped {dropped} of 2000");
    }

    #[tokio::test]
    async fn a_read_through_the_stack_trait_tells_the_adapter_how_long_the_datagram_waited() {
        use rsipstack::platform::net::UdpSocket as _;
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_addr().unwrap();
        let wait = SocketWait::default();
        let sock = TimedUdpSocket::new(rx, wait.clone());
        assert_eq!(wait.latest(), Duration::ZERO, "nothing read yet");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // As above: the kernel may stamp the first datagrams at the read.
        let mut seen = Vec::new();
        for _ in 0..5 {
            tx.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", to).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            let mut buf = [0u8; 1500];
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!((n, from), (25, tx.local_addr().unwrap()));
            if wait.latest() >= Duration::from_millis(25) {
                return;
            }
            seen.push(wait.latest());
        }
        panic!("the shared wait never showed the 30 ms in the buffer: {seen:?}");
    }
}
