//! ICMP errors on the main socket (Linux): a request to an address where nothing listens
//! fails in one round trip instead of a timeout.
//!
//! A host whose DHT process exited answers a datagram to its port with an ICMP
//! port-unreachable. An unconnected UDP socket ignores it unless `IP_RECVERR` is set; with it,
//! the kernel keeps each ICMP error in the socket's *error queue*, which we read with
//! `MSG_ERRQUEUE`: the destination we sent to, the start of the datagram (its transaction id),
//! and the ICMP type and code. Port-unreachables go to the core
//! ([`Machine::handle_unreachable`](crate::machine::Machine::handle_unreachable)), which
//! fails the matching request (the reference waits its full timeout, then punches).
//!
//! Two things come with the option, and are handled here:
//! - The error queue is charged to the socket's receive buffer until it is read: it must
//!   always be drained (when the socket reports an error, on a receive or a send that
//!   returned one), or a stream of ICMP errors would fill the buffer and the node would stop
//!   receiving.
//! - The socket's pending error is returned once by the next receive *or send* call, which
//!   then does nothing: a send that fails so is sent again ([`is_pending_error`]).
//!
//! Forged ICMP errors cost a drained entry each; they fail a request only if they name its
//! destination and transaction id, as a forged response would have to.

use std::io;
use std::net::SocketAddrV4;

/// Error-queue entries read per call at most (the rest on the next).
const MAX_DRAIN: usize = 1024;

/// Whether a send or receive failed only because an earlier ICMP error was pending on the
/// socket (the call did nothing, and a send should be made again).
pub(super) fn is_pending_error(e: &io::Error) -> bool {
    // Fragmentation needed (a path MTU probe's answer) is pending as EMSGSIZE.
    #[cfg(target_os = "linux")]
    if e.raw_os_error() == Some(nix::libc::EMSGSIZE) {
        return true;
    }
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Runs a send once more if it failed only with a pending ICMP error (see the module
/// docs); with the result, whether such an error was met (the error queue holds something).
pub(super) fn send_retrying<T>(mut send: impl FnMut() -> io::Result<T>) -> (io::Result<T>, bool) {
    match send() {
        Err(e) if is_pending_error(&e) => (send(), true),
        r => (r, false),
    }
}

/// Sets `IP_RECVERR` on `socket`; `false` (and a debug log) where that fails or is not Linux.
#[cfg(target_os = "linux")]
pub(super) fn enable(socket: &impl std::os::fd::AsFd) -> bool {
    match nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Ipv4RecvErr, &true) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cannot set IP_RECVERR: dead ports cost a timeout");
            false
        }
    }
}

/// Not Linux: ICMP errors stay unread.
#[cfg(not(target_os = "linux"))]
pub(super) fn enable<S>(_socket: &S) -> bool {
    false
}

/// Reads the socket's error queue without waiting, calling `each` with the destination and
/// the quoted start of every datagram that met a port-unreachable (other ICMP errors are
/// read and dropped). `Err(WouldBlock)` once it is empty, so that the runtime clears the
/// socket's error readiness; `Ok(())` when it stopped after [`MAX_DRAIN`] (more may wait).
#[cfg(target_os = "linux")]
pub(super) fn drain(
    socket: &impl std::os::fd::AsRawFd,
    mut each: impl FnMut(SocketAddrV4, &[u8]),
) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::libc;
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg};

    let fd = socket.as_raw_fd();
    // The transaction id is in the first two bytes; a little more costs nothing.
    let mut buf = [0u8; 64];
    // The extended error and the offender's address, and room for what else the socket
    // reports with each message (batched I/O turns on IP_PKTINFO and IP_RECVTOS: a buffer
    // too small for all of them truncates the lot).
    let mut cmsg = nix::cmsg_space!(
        libc::sock_extended_err,
        libc::sockaddr_in,
        libc::in_pktinfo,
        [u32; 8]
    );
    for _ in 0..MAX_DRAIN {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let got = recvmsg::<SockaddrIn>(
            fd,
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        );
        let (to, refused, n) = match got {
            Ok(msg) => {
                let refused = msg.cmsgs().is_ok_and(|mut c| {
                    c.any(|c| {
                        matches!(c, ControlMessageOwned::Ipv4RecvErr(e, _)
                            if e.ee_origin == libc::SO_EE_ORIGIN_ICMP
                                && e.ee_type == 3
                                && e.ee_code == 3)
                    })
                });
                let to = msg.address.map(|a| SocketAddrV4::new(a.ip(), a.port()));
                (to, refused, msg.bytes.min(64))
            }
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if let (Some(to), true) = (to, refused) {
            each(to, &buf[..n]);
        }
    }
    Ok(())
}

/// Not Linux: nothing to read.
#[cfg(not(target_os = "linux"))]
pub(super) fn drain<S>(_socket: &S, _each: impl FnMut(SocketAddrV4, &[u8])) -> io::Result<()> {
    Err(io::ErrorKind::WouldBlock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_send_is_a_pending_error_and_wouldblock_is_not() {
        assert!(is_pending_error(&io::ErrorKind::ConnectionRefused.into()));
        #[cfg(target_os = "linux")]
        assert!(is_pending_error(&io::Error::from_raw_os_error(
            nix::libc::EMSGSIZE
        )));
        assert!(!is_pending_error(&io::ErrorKind::WouldBlock.into()));
        assert!(!is_pending_error(&io::ErrorKind::PermissionDenied.into()));
    }

    #[test]
    fn a_send_is_retried_once_after_a_pending_error_only() {
        let mut calls = 0;
        let (r, pending) = send_retrying(|| {
            calls += 1;
            if calls == 1 {
                Err(io::ErrorKind::ConnectionRefused.into())
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok() && pending && calls == 2);
        let mut calls = 0;
        let (r, pending) = send_retrying::<()>(|| {
            calls += 1;
            Err(io::ErrorKind::WouldBlock.into())
        });
        assert!(r.is_err() && !pending && calls == 1);
    }
}
