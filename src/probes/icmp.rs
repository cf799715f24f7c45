//! A small ICMP echo socket of runner's own. surge-ping handed an ICMP error that quotes our
//! request to the waiter as a reply (a dead host read as healthy), and timed round trips from
//! when its send future resolved to when another task saw the reply (0 ms trips, and the other
//! probes' work inside the timing). Here:
//!
//! - the send time is read right before `sendto`, the receive time is the kernel's own stamp
//!   of the packet (`SO_TIMESTAMPNS`), both on the same clock: scheduling delays are not in it;
//! - a reply counts only if it is an echo reply with our identifier and one of our sequence
//!   numbers;
//! - an ICMP error that quotes one of our echoes (host unreachable, time exceeded) makes that
//!   echo lost, with the reason and who said it.
//!
//! Unprivileged ICMP datagram sockets are used where the kernel allows them
//! (`net.ipv4.ping_group_range`): the kernel sets the identifier, hands the socket only the
//! replies that carry it, and delivers errors on the socket's error queue (`IP_RECVERR`).
//! Otherwise raw sockets (root or CAP_NET_RAW): a raw socket is handed every ICMP packet of the
//! network namespace, so other programs' pings (hundreds a second) would fill its receive
//! buffer and the kernel would drop our own replies (loss that is not there). A kernel filter
//! (`SO_ATTACH_FILTER`) therefore admits only echo replies with our identifier and errors that
//! quote one of our echoes, before they are queued; `drain` empties what is left from the last
//! tick before a new one starts.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// Bytes after the echo header; the kernel's ICMP errors quote at least 8 bytes of it.
const PAYLOAD: &[u8; 16] = b"runner-ping-0123";

/// Identifiers of raw sockets differ per probe, so probes never take each other's replies.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// What arrived for one of our echoes.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An echo reply to `seq`, received at `at` (the kernel's stamp).
    Reply { seq: u16, at: SystemTime },
    /// An ICMP error about `seq`: why, and who said it.
    Error { seq: u16, reason: String },
}

/// What to tell an operator when the kernel refuses an ICMP socket.
pub fn socket_error_message(family: Family, error: &io::Error) -> String {
    let denied = error.kind() == io::ErrorKind::PermissionDenied
        || matches!(error.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
    if denied {
        // One sysctl governs unprivileged ping sockets of both families.
        format!(
            "this user may not open {} ICMP sockets: allow unprivileged ping with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` (the range must include runner's group), or give runner raw sockets with `setcap cap_net_raw+ep <path of the runner binary>`",
            family.name()
        )
    } else {
        format!("cannot open an ICMP socket: {error}")
    }
}

/// An ICMP echo socket of one family.
pub struct EchoSocket {
    fd: AsyncFd<Socket>,
    family: Family,
    /// Raw: our kernel filter passes only packets about our identifier, and `classify` checks
    /// it again. Datagram: the kernel matches replies to the socket itself.
    raw: bool,
    ident: u16,
}

impl EchoSocket {
    /// An unprivileged datagram socket if the kernel allows one, else a raw socket.
    pub fn open(family: Family) -> Result<EchoSocket, String> {
        let (domain, protocol) = match family {
            Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
            Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
        };
        let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => (socket, false),
            Err(dgram) => match Socket::new(domain, Type::RAW, Some(protocol)) {
                Ok(socket) => (socket, true),
                // The datagram socket's refusal says what to change.
                Err(_) => return Err(socket_error_message(family, &dgram)),
            },
        };
        let fail = |e: io::Error| format!("cannot set up the ICMP socket: {e}");
        socket.set_nonblocking(true).map_err(fail)?;
        set_int(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).map_err(fail)?;
        let ident = if raw {
            NEXT_IDENT.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16)
        } else {
            // ICMP errors about our echoes come on the error queue.
            match family {
                Family::V4 => set_int(&socket, libc::SOL_IP, libc::IP_RECVERR, 1),
                Family::V6 => set_int(&socket, libc::SOL_IPV6, libc::IPV6_RECVERR, 1),
            }
            .map_err(fail)?;
            // The kernel sets a datagram socket's identifier to its port: bind to learn it.
            let any: SocketAddr = match family {
                Family::V4 => (Ipv4Addr::UNSPECIFIED, 0).into(),
                Family::V6 => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            socket.bind(&any.into()).map_err(fail)?;
            socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map_or(0, |a| a.port())
        };
        if raw {
            // Only the kinds of packet that can be about us: replies and errors (a cheap first
            // cut; the identifier filter below is what keeps other programs' replies out).
            let _ = match family {
                Family::V4 => set_icmp_filter(&socket),
                Family::V6 => set_icmp6_filter(&socket),
            };
            attach_ident_filter(&socket, family, ident).map_err(fail)?;
            // Packets that arrived between `socket` and the filter passed nothing.
            drain_fd(socket.as_raw_fd(), false);
        }
        // SAFETY: the socket is owned by the AsyncFd from here on and never replaced, so its
        // descriptor stays open and the same for the AsyncFd's whole life.
        let fd = unsafe {
            AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::ERROR)
        }
        .map_err(|e| fail(e.into()))?;
        Ok(EchoSocket {
            fd,
            family,
            raw,
            ident,
        })
    }

    /// Sends echo request `seq` to `to`; returns the time read right before the send call.
    pub fn send(&self, to: IpAddr, seq: u16) -> io::Result<SystemTime> {
        let packet = echo_request(self.family, self.ident, seq);
        let to = SockAddr::from(SocketAddr::new(to, 0));
        let sent_at = SystemTime::now();
        self.fd.get_ref().send_to(&packet, &to)?;
        Ok(sent_at)
    }

    /// Throws away whatever is queued (late replies and errors of earlier ticks), so a new
    /// tick starts with an empty receive buffer.
    pub fn drain(&self) {
        drain_fd(self.fd.get_ref().as_raw_fd(), !self.raw);
    }

    /// The next answer about one of our echoes; other packets are passed over.
    pub async fn receive(&self) -> io::Result<Answer> {
        loop {
            let mut guard = self.fd.ready(Interest::READABLE | Interest::ERROR).await?;
            let fd = self.fd.get_ref().as_raw_fd();
            if !self.raw {
                match recv(fd, true) {
                    Ok(message) => {
                        if let Some(answer) = self.error_answer(&message) {
                            return Ok(answer);
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            match recv(fd, false) {
                Ok(message) => {
                    if let Some(answer) = self.packet_answer(&message) {
                        return Ok(answer);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }

    fn packet_answer(&self, message: &Message) -> Option<Answer> {
        let icmp = match (self.family, self.raw) {
            // A raw IPv4 socket gets the IP header too.
            (Family::V4, true) => strip_ipv4_header(&message.data)?,
            _ => &message.data[..],
        };
        let from = message.from.map(|a| a.to_string()).unwrap_or_default();
        let at = message.stamp.unwrap_or_else(SystemTime::now);
        classify(self.family, icmp, self.ident, self.raw, &from, at)
    }

    /// A datagram socket's error queue: the echo we sent, and why it failed.
    fn error_answer(&self, message: &Message) -> Option<Answer> {
        let error = message.error.as_ref()?;
        let (kind, seq) = echo_header(&message.data)?;
        let request = match self.family {
            Family::V4 => ECHO_REQUEST_V4,
            Family::V6 => ECHO_REQUEST_V6,
        };
        (kind == request).then(|| Answer::Error {
            seq,
            reason: error_reason(self.family, error.kind, error.code, error.offender),
        })
    }
}

/// Type and sequence number of an echo message (request or reply) at the start of `icmp`.
fn echo_header(icmp: &[u8]) -> Option<(u8, u16)> {
    (icmp.len() >= 8).then(|| (icmp[0], u16::from_be_bytes([icmp[6], icmp[7]])))
}

fn echo_ident(icmp: &[u8]) -> Option<u16> {
    (icmp.len() >= 8).then(|| u16::from_be_bytes([icmp[4], icmp[5]]))
}

fn strip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    (header >= 20 && packet.len() >= header).then(|| &packet[header..])
}

/// What an ICMP message (without IP header) says about our echoes, if anything: a reply with
/// our identifier, or an error that quotes one of our requests.
pub fn classify(
    family: Family,
    icmp: &[u8],
    ident: u16,
    check_ident: bool,
    from: &str,
    at: SystemTime,
) -> Option<Answer> {
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let (reply, request) = match family {
        Family::V4 => (ECHO_REPLY_V4, ECHO_REQUEST_V4),
        Family::V6 => (ECHO_REPLY_V6, ECHO_REQUEST_V6),
    };
    if kind == reply {
        let (_, seq) = echo_header(icmp)?;
        if check_ident && echo_ident(icmp)? != ident {
            return None;
        }
        return Some(Answer::Reply { seq, at });
    }
    if !is_error(family, kind) {
        return None;
    }
    // The error quotes the packet it is about: its IP header, then at least 8 bytes of it.
    let quoted = icmp.get(8..)?;
    let inner = match family {
        Family::V4 => strip_ipv4_header(quoted)?,
        Family::V6 => quoted.get(40..)?,
    };
    let (inner_kind, seq) = echo_header(inner)?;
    if inner_kind != request || (check_ident && echo_ident(inner)? != ident) {
        return None;
    }
    let offender = from.parse().ok();
    Some(Answer::Error {
        seq,
        reason: error_reason(family, kind, code, offender),
    })
}

fn is_error(family: Family, kind: u8) -> bool {
    match family {
        // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
        Family::V4 => matches!(kind, 3 | 4 | 5 | 11 | 12),
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        Family::V6 => matches!(kind, 1..=4),
    }
}

/// An ICMP error in the words of `ping`: `host unreachable (from 10.0.0.1)`.
pub fn error_reason(family: Family, kind: u8, code: u8, from: Option<IpAddr>) -> String {
    let what = match (family, kind, code) {
        (Family::V4, 3, 0) => "network unreachable",
        (Family::V4, 3, 1) => "host unreachable",
        (Family::V4, 3, 2) => "protocol unreachable",
        (Family::V4, 3, 3) => "port unreachable",
        (Family::V4, 3, 4) => "fragmentation needed",
        (Family::V4, 3, 9 | 10 | 13) => "administratively prohibited",
        (Family::V4, 3, _) => "destination unreachable",
        (Family::V4, 4, _) => "source quench",
        (Family::V4, 5, _) => "redirect",
        (Family::V4, 11, _) => "time to live exceeded",
        (Family::V4, 12, _) => "parameter problem",
        (Family::V6, 1, 0) => "no route to destination",
        (Family::V6, 1, 1) => "administratively prohibited",
        (Family::V6, 1, 3) => "address unreachable",
        (Family::V6, 1, 4) => "port unreachable",
        (Family::V6, 1, _) => "destination unreachable",
        (Family::V6, 2, _) => "packet too big",
        (Family::V6, 3, _) => "hop limit exceeded",
        (Family::V6, 4, _) => "parameter problem",
        _ => "ICMP error",
    };
    match from {
        Some(from) => format!("{what} (from {from})"),
        None => what.to_string(),
    }
}

fn echo_request(family: Family, ident: u16, seq: u16) -> Vec<u8> {
    let kind = match family {
        Family::V4 => ECHO_REQUEST_V4,
        Family::V6 => ECHO_REQUEST_V6,
    };
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    // ICMPv6's checksum covers a pseudo-header: the kernel fills it in.
    if family == Family::V4 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One datagram and what the kernel said about it.
struct Message {
    data: Vec<u8>,
    from: Option<IpAddr>,
    /// When the kernel received it.
    stamp: Option<SystemTime>,
    /// From the error queue: the ICMP error the kernel matched to our socket.
    error: Option<QueuedError>,
}

struct QueuedError {
    kind: u8,
    code: u8,
    offender: Option<IpAddr>,
}

fn set_int(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives for the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ICMP_FILTER` on a raw IPv4 socket: let through echo replies and error types only.
fn set_icmp_filter(socket: &Socket) -> io::Result<()> {
    const ICMP_FILTER: i32 = 1;
    let wanted: u32 = [ECHO_REPLY_V4, 3, 4, 5, 11, 12]
        .iter()
        .fold(0, |mask, kind| mask | (1 << kind));
    set_int(socket, libc::SOL_RAW, ICMP_FILTER, !wanted as i32)
}

/// `ICMP6_FILTER` on a raw IPv6 socket: let through echo replies and error types only.
fn set_icmp6_filter(socket: &Socket) -> io::Result<()> {
    const ICMP6_FILTER: i32 = 1;
    // One bit per ICMPv6 type; a set bit blocks the type.
    let mut blocked = [u32::MAX; 8];
    for kind in [ECHO_REPLY_V6, 1, 2, 3, 4] {
        blocked[usize::from(kind >> 5)] &= !(1 << (kind & 31));
    }
    // SAFETY: `blocked` is the kernel's `struct icmp6_filter` (256 bits), lives for the call,
    // and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            blocked.as_ptr().cast(),
            size_of::<[u32; 8]>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A classic BPF program that accepts only what is about our echoes: an echo reply carrying
/// `ident`, or an ICMP error quoting an echo request carrying `ident`. Everything else is
/// dropped before it takes room in the socket's receive buffer.
///
/// On a raw IPv4 socket the filter sees the packet from its IP header, so the ICMP header is
/// found past the header length (`ldx 4*([0]&0xf)`), and the quoted request of an error past
/// the quoted IP header's length too. On a raw IPv6 socket it sees the ICMPv6 header first;
/// an error quotes a 40-byte IPv6 header (echoes carry no extension headers).
fn ident_filter(family: Family, ident: u16) -> Vec<libc::sock_filter> {
    fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    use libc::{
        BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JGT, BPF_JMP,
        BPF_K, BPF_LD, BPF_LDX, BPF_LSH, BPF_MISC, BPF_MSH, BPF_RET, BPF_TAX, BPF_X,
    };
    let ident = u32::from(ident);
    // Jump offsets count the instructions skipped; `accept` and `drop` are the last two.
    let accept = op(BPF_RET | BPF_K, 0, 0, u32::MAX);
    let drop = op(BPF_RET | BPF_K, 0, 0, 0);
    match family {
        Family::V4 => vec![
            // 0: X = length of the IP header.
            op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),
            // 1: A = ICMP type.
            op(BPF_LD | BPF_B | BPF_IND, 0, 0, 0),
            // 2: an echo reply: its identifier is checked at 17.
            op(BPF_JMP | BPF_JEQ | BPF_K, 14, 0, u32::from(ECHO_REPLY_V4)),
            // 3-7: the error types of `is_error` go on at 8; anything else is dropped.
            op(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 3),
            op(BPF_JMP | BPF_JEQ | BPF_K, 3, 0, 4),
            op(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 5),
            op(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 11),
            op(BPF_JMP | BPF_JEQ | BPF_K, 0, 12, 12),
            // 8-12: X += length of the quoted IP header (8 bytes into the error).
            op(BPF_LD | BPF_B | BPF_IND, 0, 0, 8),
            op(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x0f),
            op(BPF_ALU | BPF_LSH | BPF_K, 0, 0, 2),
            op(BPF_ALU | BPF_ADD | BPF_X, 0, 0, 0),
            op(BPF_MISC | BPF_TAX, 0, 0, 0),
            // 13-14: the quoted packet is an echo request...
            op(BPF_LD | BPF_B | BPF_IND, 0, 0, 8),
            op(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, u32::from(ECHO_REQUEST_V4)),
            // 15-16: ...with our identifier.
            op(BPF_LD | BPF_H | BPF_IND, 0, 0, 12),
            op(BPF_JMP | BPF_JEQ | BPF_K, 2, 3, ident),
            // 17-18: a reply with our identifier.
            op(BPF_LD | BPF_H | BPF_IND, 0, 0, 4),
            op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, ident),
            // 19, 20.
            accept,
            drop,
        ],
        Family::V6 => vec![
            // 0-1: an echo reply: its identifier is checked at 7.
            op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
            op(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, u32::from(ECHO_REPLY_V6)),
            // 2: the error types (1 to 4) go on at 3; informational types are dropped.
            op(BPF_JMP | BPF_JGT | BPF_K, 7, 0, 4),
            // 3-4: the quoted packet (past 8 bytes of error and 40 of IPv6 header) is an echo
            // request...
            op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 48),
            op(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, u32::from(ECHO_REQUEST_V6)),
            // 5-6: ...with our identifier.
            op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 52),
            op(BPF_JMP | BPF_JEQ | BPF_K, 2, 3, ident),
            // 7-8: a reply with our identifier.
            op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 4),
            op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, ident),
            // 9, 10.
            accept,
            drop,
        ],
    }
}

/// Attaches `ident_filter` to a raw socket.
fn attach_ident_filter(socket: &Socket, family: Family, ident: u16) -> io::Result<()> {
    // linux/asm-generic/socket.h; the libc crate has it for Android only.
    const SO_ATTACH_FILTER: i32 = 26;
    let mut program = ident_filter(family, ident);
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call (the kernel copies it), and
    // its length is the program's.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads and discards every queued datagram (and queued error, for datagram sockets) without
/// waiting. Bounded, so a flood cannot hold a tick here.
fn drain_fd(fd: RawFd, error_queue: bool) {
    let mut data = [0u8; 1500];
    for flags in [libc::MSG_DONTWAIT | libc::MSG_ERRQUEUE, libc::MSG_DONTWAIT] {
        if flags & libc::MSG_ERRQUEUE != 0 && !error_queue {
            continue;
        }
        for _ in 0..10_000 {
            // SAFETY: `data` is a writable buffer of the length passed; the control data and
            // sender of a discarded datagram are not wanted (a truncated error is dropped too).
            let n = unsafe { libc::recv(fd, data.as_mut_ptr().cast(), data.len(), flags) };
            if n < 0 {
                break;
            }
        }
    }
}

/// One `recvmsg`, from the normal queue or the error queue, with its control messages read.
fn recv(fd: RawFd, error_queue: bool) -> io::Result<Message> {
    let mut data = vec![0u8; 1500];
    let mut control = [0u64; 64];
    // SAFETY: zeroed sockaddr_storage is a valid (empty) address buffer.
    let mut from: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = size_of::<[u64; 64]>() as _;
    let flags = libc::MSG_DONTWAIT | if error_queue { libc::MSG_ERRQUEUE } else { 0 };
    // SAFETY: `header` describes buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(fd, &mut header, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    data.truncate(n as usize);
    let mut message = Message {
        data,
        from: address(&from),
        stamp: None,
        error: None,
    };
    // SAFETY: the kernel filled `control` up to `msg_controllen`; the CMSG helpers walk it
    // within that length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            let body = libc::CMSG_DATA(cmsg);
            if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                let ts = (body as *const libc::timespec).read_unaligned();
                message.stamp =
                    Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            } else if (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
            {
                let ee = (body as *const libc::sock_extended_err).read_unaligned();
                let offender_ptr = body.add(size_of::<libc::sock_extended_err>());
                let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
                let room = ((*cmsg).cmsg_len as usize)
                    .saturating_sub(offender_ptr as usize - cmsg as usize)
                    .min(size_of::<libc::sockaddr_storage>());
                std::ptr::copy_nonoverlapping(offender_ptr, storage.as_mut_ptr().cast(), room);
                let origin_icmp = ee.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                message.error = Some(QueuedError {
                    kind: ee.ee_type,
                    code: ee.ee_code,
                    offender: if origin_icmp {
                        address(storage.as_ptr().as_ref().unwrap_or(&zeroed()))
                    } else {
                        None
                    },
                });
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    if error_queue && message.error.is_none() {
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    }
    Ok(message)
}

fn address(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_header(protocol: u8) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
        h.extend_from_slice(&[10, 0, 0, 5]);
        h.extend_from_slice(&[10, 255, 255, 1]);
        h
    }

    #[test]
    fn an_echo_request_checksums_to_zero() {
        let packet = echo_request(Family::V4, 0x1234, 7);
        assert_eq!(checksum(&packet), 0);
        assert_eq!(echo_header(&packet), Some((ECHO_REQUEST_V4, 7)));
        assert_eq!(echo_ident(&packet), Some(0x1234));
    }

    #[test]
    fn only_our_replies_are_replies() {
        let at = SystemTime::now();
        let mut reply = echo_request(Family::V4, 0x1234, 3);
        reply[0] = ECHO_REPLY_V4;
        assert_eq!(
            classify(Family::V4, &reply, 0x1234, true, "10.0.0.1", at),
            Some(Answer::Reply { seq: 3, at })
        );
        // Another process's reply (another identifier), or our own request looped back.
        assert_eq!(
            classify(Family::V4, &reply, 0x9999, true, "10.0.0.1", at),
            None
        );
        let request = echo_request(Family::V4, 0x1234, 3);
        assert_eq!(
            classify(Family::V4, &request, 0x1234, true, "10.0.0.1", at),
            None
        );
    }

    #[test]
    fn an_icmp_error_about_our_echo_is_loss_with_its_reason() {
        let at = SystemTime::now();
        // Port unreachable from a router, quoting our request (IP header + echo header).
        let mut error = vec![3, 3, 0, 0, 0, 0, 0, 0];
        error.extend(ipv4_header(1));
        error.extend(echo_request(Family::V4, 0x1234, 2));
        assert_eq!(
            classify(Family::V4, &error, 0x1234, true, "10.255.255.1", at),
            Some(Answer::Error {
                seq: 2,
                reason: "port unreachable (from 10.255.255.1)".into()
            })
        );
        // The same error about someone else's echo is not ours.
        assert_eq!(
            classify(Family::V4, &error, 0x4321, true, "10.255.255.1", at),
            None
        );
        // Host unreachable, the kernel's own answer for a silent host on the local link.
        error[1] = 1;
        assert!(matches!(
            classify(Family::V4, &error, 0x1234, true, "10.0.0.5", at),
            Some(Answer::Error { reason, .. }) if reason == "host unreachable (from 10.0.0.5)"
        ));
        // IPv6: address unreachable, quoting a 40-byte IPv6 header and our request.
        let mut v6 = vec![1, 3, 0, 0, 0, 0, 0, 0];
        v6.extend(vec![0x60; 40]);
        v6.extend(echo_request(Family::V6, 0x1234, 4));
        assert_eq!(
            classify(Family::V6, &v6, 0x1234, true, "fe80::1", at),
            Some(Answer::Error {
                seq: 4,
                reason: "address unreachable (from fe80::1)".into()
            })
        );
    }

    /// Runs a classic BPF program of `ident_filter` (the instructions it uses) on a packet.
    fn run_filter(program: &[libc::sock_filter], packet: &[u8]) -> bool {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: u32, size: usize| -> Option<u32> {
            let bytes = packet.get(at as usize..at as usize + size)?;
            Some(bytes.iter().fold(0, |v, b| (v << 8) | u32::from(*b)))
        };
        loop {
            let op = program[pc];
            let code = u32::from(op.code);
            pc += 1;
            let size = if code & 0x18 == libc::BPF_H { 2 } else { 1 };
            match code & 0x07 {
                libc::BPF_LD => {
                    let at = if code & 0xe0 == libc::BPF_IND {
                        x + op.k
                    } else {
                        op.k
                    };
                    match load(at, size) {
                        Some(v) => a = v,
                        None => return false,
                    }
                }
                libc::BPF_LDX => match load(op.k, 1) {
                    Some(v) => x = 4 * (v & 0x0f),
                    None => return false,
                },
                libc::BPF_ALU => {
                    let v = if code & 0x08 == libc::BPF_X { x } else { op.k };
                    a = match code & 0xf0 {
                        libc::BPF_ADD => a + v,
                        libc::BPF_AND => a & v,
                        libc::BPF_LSH => a << v,
                        other => panic!("ALU op {other:#x}"),
                    };
                }
                libc::BPF_MISC => x = a,
                libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        libc::BPF_JEQ => a == op.k,
                        libc::BPF_JGT => a > op.k,
                        other => panic!("jump op {other:#x}"),
                    };
                    pc += usize::from(if taken { op.jt } else { op.jf });
                }
                libc::BPF_RET => return op.k != 0,
                other => panic!("class {other:#x}"),
            }
        }
    }

    #[test]
    fn the_kernel_filter_admits_only_what_is_about_our_echoes() {
        let v4 = ident_filter(Family::V4, 0x1234);
        let with_ip = |icmp: &[u8]| [ipv4_header(1), icmp.to_vec()].concat();
        let reply = |family, ident| {
            let mut p = echo_request(family, ident, 3);
            p[0] = if family == Family::V4 {
                ECHO_REPLY_V4
            } else {
                ECHO_REPLY_V6
            };
            p
        };
        assert!(run_filter(&v4, &with_ip(&reply(Family::V4, 0x1234))));
        // Another program's reply, our own request looped back, anything else.
        assert!(!run_filter(&v4, &with_ip(&reply(Family::V4, 0x9999))));
        assert!(!run_filter(
            &v4,
            &with_ip(&echo_request(Family::V4, 0x1234, 3))
        ));
        assert!(!run_filter(&v4, &with_ip(&[13, 0, 0, 0, 0x12, 0x34, 0, 0])));
        // An error quoting our request (with IP options in the outer header), or another's.
        let mut outer = ipv4_header(1);
        outer[0] = 0x46;
        outer.extend([1, 1, 1, 1]);
        for kind in [3, 11] {
            let mut error = outer.clone();
            error.extend([kind, 1, 0, 0, 0, 0, 0, 0]);
            error.extend(ipv4_header(1));
            error.extend(echo_request(Family::V4, 0x1234, 2));
            assert!(run_filter(&v4, &error), "type {kind}");
            assert!(!run_filter(&ident_filter(Family::V4, 0x4321), &error));
        }
        assert!(!run_filter(&v4, &with_ip(&reply(Family::V4, 0x1234)[..5])));

        let v6 = ident_filter(Family::V6, 0x1234);
        assert!(run_filter(&v6, &reply(Family::V6, 0x1234)));
        assert!(!run_filter(&v6, &reply(Family::V6, 0x9999)));
        assert!(!run_filter(&v6, &echo_request(Family::V6, 0x1234, 3)));
        // Neighbour solicitation: informational, not ours.
        assert!(!run_filter(&v6, &[135, 0, 0, 0, 0x12, 0x34, 0, 0]));
        let mut error = vec![1, 3, 0, 0, 0, 0, 0, 0];
        error.extend(vec![0x60; 40]);
        error.extend(echo_request(Family::V6, 0x1234, 4));
        assert!(run_filter(&v6, &error));
        assert!(!run_filter(&ident_filter(Family::V6, 0x4321), &error));
    }

    #[test]
    fn a_refused_socket_says_what_to_change() {
        let denied = io::Error::from_raw_os_error(libc::EPERM);
        let message = socket_error_message(Family::V4, &denied);
        assert!(
            message.contains("sysctl -w net.ipv4.ping_group_range=\"0 2147483647\""),
            "{message}"
        );
        assert!(message.contains("setcap cap_net_raw+ep"), "{message}");
        let v6 = socket_error_message(Family::V6, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(
            v6.starts_with("this user may not open IPv6 ICMP sockets"),
            "{v6}"
        );
        let other = socket_error_message(Family::V4, &io::Error::from_raw_os_error(libc::EMFILE));
        assert!(other.starts_with("cannot open an ICMP socket: "), "{other}");
    }
}
