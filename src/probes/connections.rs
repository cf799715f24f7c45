//! `connections`: established TCP connections to local ports, IPv4 and IPv6: a server's live
//! sessions, how many distinct clients hold them, and how many the busiest client holds.
//!
//! The sockets come from the kernel's `sock_diag` netlink interface, as `ss` reads them: the
//! kernel keeps only established sockets on the probe's ports, so a busy server's table (every
//! client end and every other port included) is never formatted as text and parsed again.
//! `/proc/net/tcp` and `/proc/net/tcp6` are read instead when netlink is not allowed (some
//! containers), and when the probe reads a proc root other than `/proc`: netlink answers for
//! runner's own network namespace, the files for the tree the user pointed at.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::procfs::{ProcRoot, read_into};
use super::{Names, Output};
use crate::config::probes::connections::TYPE;

const ESTABLISHED: &str = "01";

/// `0100007F:1F90` → (127.0.0.1, 8080). The kernel prints each 32-bit word of the address in
/// host byte order, so on little-endian machines every word's bytes are reversed.
pub fn parse_socket(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            // An IPv4 client on a dual-stack socket is that IPv4 client.
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Remote addresses of established connections to `ports` in one `/proc/net/tcp*` file.
pub fn established_remotes(text: &str, ports: &[u16], into: &mut Vec<IpAddr>) {
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(_), Some(local), Some(remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if state != ESTABLISHED {
            continue;
        }
        if let (Some((_, port)), Some((ip, _))) = (parse_socket(local), parse_socket(remote))
            && ports.contains(&port)
        {
            into.push(ip);
        }
    }
}

/// Remote addresses of established connections to `ports`, read from `proc`'s `net/tcp` and
/// `net/tcp6` through `buf`.
pub fn proc_remotes(
    proc: &Path,
    ports: &[u16],
    buf: &mut String,
    into: &mut Vec<IpAddr>,
) -> Result<(), String> {
    let mut read_any = false;
    for file in ["net/tcp", "net/tcp6"] {
        // A host without IPv6 has no tcp6: that is not an error.
        if read_into(&proc.join(file), buf).is_ok() {
            read_any = true;
            established_remotes(buf, ports, into);
        }
    }
    if read_any {
        Ok(())
    } else {
        Err("cannot read /proc/net/tcp or /proc/net/tcp6".into())
    }
}

/// Where the probe finds sockets.
enum Source {
    /// Netlink `sock_diag`, opened on the first tick.
    Netlink(Option<SockDiag>),
    /// `/proc/net/tcp*` under the probe's proc root.
    Files,
}

/// Netlink's failure is said once per process, not once per probe or reload: it is a property
/// of where runner runs, and every tick after it reads the files.
static NETLINK_FAILURE_SAID: std::sync::Once = std::sync::Once::new();

pub struct ConnectionsProbe {
    root: ProcRoot,
    ports: Vec<u16>,
    instance: String,
    names: Names,
    buf: String,
    source: Source,
    remotes: Vec<IpAddr>,
    per_remote: HashMap<IpAddr, u64>,
}

impl ConnectionsProbe {
    /// Reads netlink when the proc root is the process's own `/proc`, the files otherwise.
    pub fn new(root: ProcRoot, ports: Vec<u16>, instance: &str) -> Self {
        let own = root.proc == Path::new("/proc");
        let mut probe = Self::from_files(root, ports, instance);
        if own {
            probe.source = Source::Netlink(None);
        }
        probe
    }

    /// Always reads `/proc/net/tcp*` under `root` (the fallback, and what benchmarks compare).
    pub fn from_files(root: ProcRoot, ports: Vec<u16>, instance: &str) -> Self {
        ConnectionsProbe {
            root,
            ports,
            instance: instance.to_string(),
            names: Names::new("connections"),
            buf: String::new(),
            source: Source::Files,
            remotes: Vec::new(),
            per_remote: HashMap::new(),
        }
    }

    /// Whether this probe reads netlink (until netlink fails).
    pub fn reads_netlink(&self) -> bool {
        matches!(self.source, Source::Netlink(_))
    }

    fn read_remotes(&mut self) -> Result<(), String> {
        self.remotes.clear();
        if let Source::Netlink(diag) = &mut self.source {
            // A socket that has answered before and fails one read (a dump cut short, its
            // timeout) is opened again next tick; only a socket the kernel refuses, or a first
            // request it refuses, sends the probe to the files for good.
            let read = match diag.as_mut() {
                Some(open) => {
                    let read = open.established_remotes(&self.ports, &mut self.remotes);
                    if read.is_err() {
                        *diag = None;
                    }
                    read.map_err(|e| (e, false))
                }
                None => match SockDiag::open() {
                    Ok(mut opened) => {
                        let read = opened.established_remotes(&self.ports, &mut self.remotes);
                        if read.is_ok() {
                            *diag = Some(opened);
                        }
                        // A first read that fails is the kernel refusing the request.
                        read.map_err(|e| (e, true))
                    }
                    Err(e) => Err((e, true)),
                },
            };
            match read {
                Ok(()) => return Ok(()),
                Err((e, false)) => {
                    tracing::debug!(
                        "connections: a netlink read failed ({e}); the files this tick"
                    );
                    self.remotes.clear();
                }
                Err((e, true)) => {
                    NETLINK_FAILURE_SAID.call_once(|| {
                        tracing::warn!(
                            "connections: netlink sock_diag is not available ({e}); reading \
                             /proc/net/tcp and /proc/net/tcp6 instead, which costs more CPU \
                             over many sockets"
                        );
                    });
                    self.source = Source::Files;
                    self.remotes.clear();
                }
            }
        }
        proc_remotes(
            &self.root.proc,
            &self.ports,
            &mut self.buf,
            &mut self.remotes,
        )
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        self.read_remotes()?;
        self.per_remote.clear();
        for ip in &self.remotes {
            *self.per_remote.entry(*ip).or_default() += 1;
        }
        let names = self.names.get(&self.instance, TYPE.fields);
        out.push(&names[0], self.remotes.len() as f64);
        out.push(&names[1], self.per_remote.len() as f64);
        out.push(
            &names[2],
            self.per_remote.values().copied().max().unwrap_or(0) as f64,
        );
        Ok(())
    }
}

impl super::Read for ConnectionsProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
}

// Netlink `sock_diag` (linux/sock_diag.h, linux/inet_diag.h): the layouts are fixed ABI, so
// they are written and read here as bytes at their offsets rather than as libc structs (libc
// has no inet_diag types).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
const TCP_ESTABLISHED: u8 = 1;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte sockid.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg` up to the end of its sockid's addresses, all the probe reads.
const MSG_MIN_LEN: usize = 40;
/// Beyond this many ports the filter would not fit the bytecode's 16-bit jumps: the kernel
/// then sends every established socket and the ports are checked here.
const MAX_BYTECODE_PORTS: usize = 1_000;
/// A dump comes in parts of at most 32 KiB; a larger buffer takes a whole part in one call.
const RECV_BUF: usize = 64 * 1024;

/// A `NETLINK_SOCK_DIAG` socket and its buffers, kept from tick to tick.
pub struct SockDiag {
    fd: std::os::fd::OwnedFd,
    buf: Vec<u8>,
    request: Vec<u8>,
    seq: u32,
    /// Sockets the kernel sent in the last read, before the check here: tests see that the
    /// kernel filtered.
    sent: usize,
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The kernel-side filter: the local port is one of `ports`. Each port is `sport >= p` then
/// `sport <= p` (the equality op is younger than some kernels still in service), and a match
/// jumps to the end (accept); a miss goes on to the next port, the last one's past the end
/// (reject). Every jump lands on an op the kernel's audit reaches by following the "yes"
/// jumps, as it requires.
fn port_filter(ports: &[u16]) -> Vec<u8> {
    // Per port: GE, its port, LE, its port (16 bytes), and a jump to the end (4) but the last.
    let total = ports.len() * 20 - 4;
    let mut code = Vec::with_capacity(total);
    let op = |code: &mut Vec<u8>, kind: u8, yes: u8, no: usize| {
        code.push(kind);
        code.push(yes);
        // Fits: `MAX_BYTECODE_PORTS` bounds the length.
        code.extend_from_slice(&(no as u16).to_ne_bytes());
    };
    for (i, &port) in ports.iter().enumerate() {
        let at = i * 20;
        // A miss on GE skips its LE and jump; on LE, its jump.
        op(&mut code, INET_DIAG_BC_S_GE, 8, 20);
        op(&mut code, 0, 0, usize::from(port));
        op(&mut code, INET_DIAG_BC_S_LE, 8, 12);
        op(&mut code, 0, 0, usize::from(port));
        if i + 1 < ports.len() {
            op(&mut code, INET_DIAG_BC_JMP, 4, total - (at + 16));
        }
    }
    code
}

impl SockDiag {
    pub fn open() -> std::io::Result<SockDiag> {
        use std::os::fd::FromRawFd;
        // SAFETY: socket() takes no pointers; its result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // A kernel that stops answering must not hold the file probes' thread forever.
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: the option value points at a timeval of the size given, alive for the call.
        let set = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(last_error());
        }
        Ok(SockDiag {
            fd,
            buf: vec![0; RECV_BUF],
            request: Vec::new(),
            seq: 0,
            sent: 0,
        })
    }

    /// Remote addresses of established TCP connections (IPv4, then IPv6) whose local port is
    /// one of `ports`, as `established_remotes` finds them in `/proc/net/tcp*`.
    pub fn established_remotes(
        &mut self,
        ports: &[u16],
        into: &mut Vec<IpAddr>,
    ) -> std::io::Result<()> {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        self.sent = 0;
        if ports.is_empty() {
            return Ok(());
        }
        self.dump(libc::AF_INET as u8, &ports, into)?;
        match self.dump(libc::AF_INET6 as u8, &ports, into) {
            // A kernel without IPv6 has no IPv6 sockets: not an error, as a missing tcp6.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT)
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    fn dump(&mut self, family: u8, ports: &[u16], into: &mut Vec<IpAddr>) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let code = if ports.len() <= MAX_BYTECODE_PORTS {
            port_filter(ports)
        } else {
            Vec::new()
        };
        // Each dump has its own sequence number: parts of an earlier dump cut short by an
        // error are left unread and then recognised and skipped.
        self.seq = self.seq.wrapping_add(1);
        let attr_len = if code.is_empty() { 0 } else { 4 + code.len() };
        let len = NLMSG_HDRLEN + REQ_LEN + attr_len;
        let r = &mut self.request;
        r.clear();
        r.extend_from_slice(&(len as u32).to_ne_bytes());
        r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        r.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
        r.extend_from_slice(&self.seq.to_ne_bytes());
        r.extend_from_slice(&0u32.to_ne_bytes());
        r.push(family);
        r.push(libc::IPPROTO_TCP as u8);
        r.push(0); // no extensions: the fixed part has all the probe reads
        r.push(0);
        r.extend_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
        r.resize(NLMSG_HDRLEN + REQ_LEN, 0); // any socket id
        if !code.is_empty() {
            r.extend_from_slice(&(attr_len as u16).to_ne_bytes());
            r.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
            r.extend_from_slice(&code);
        }
        // SAFETY: sockaddr_nl is plain data; all zeroes but the family addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and the address are valid for the lengths given during the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                r.as_ptr().cast(),
                r.len(),
                0,
                (&raw const kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(last_error());
        }
        loop {
            // SAFETY: the buffer is valid for writes of its length during the call.
            let got = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if got < 0 {
                let e = last_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if got == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "netlink socket closed mid-dump",
                ));
            }
            if parse_part(
                &self.buf[..got as usize],
                self.seq,
                ports,
                into,
                &mut self.sent,
            )? {
                return Ok(());
            }
        }
    }
}

/// Reads one `recv`'s worth of a dump into `into`; true once the dump is done.
fn parse_part(
    part: &[u8],
    seq: u32,
    ports: &[u16],
    into: &mut Vec<IpAddr>,
    sent: &mut usize,
) -> std::io::Result<bool> {
    let malformed =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed netlink message");
    let mut at = 0;
    while at + NLMSG_HDRLEN <= part.len() {
        let len = u32_at(part, at) as usize;
        if len < NLMSG_HDRLEN || at + len > part.len() {
            return Err(malformed());
        }
        let kind = u16_at(part, at + 4);
        let this_seq = u32_at(part, at + 8);
        let body = &part[at + NLMSG_HDRLEN..at + len];
        // Messages are 4-byte aligned.
        at += (len + 3) & !3;
        if this_seq != seq {
            continue;
        }
        match kind {
            k if k == libc::NLMSG_DONE as u16 => {
                // A dump that failed part-way says so in its last message.
                if body.len() >= 4 {
                    let code = u32_at(body, 0) as i32;
                    if code < 0 {
                        return Err(std::io::Error::from_raw_os_error(-code));
                    }
                }
                return Ok(true);
            }
            k if k == libc::NLMSG_ERROR as u16 => {
                if body.len() < 4 {
                    return Err(malformed());
                }
                let code = u32_at(body, 0) as i32;
                // Zero is an acknowledgement, which a dump does not ask for: nothing wrong.
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(code.saturating_neg()));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < MSG_MIN_LEN {
                    return Err(malformed());
                }
                *sent += 1;
                // The kernel filtered on state and port; checked again here because the port
                // filter is left out for a long list, and costs nothing next to the rest.
                let local = u16::from_be_bytes([body[4], body[5]]);
                if body[1] != TCP_ESTABLISHED || ports.binary_search(&local).is_err() {
                    continue;
                }
                let dst = &body[24..40];
                let ip = match i32::from(body[0]) {
                    libc::AF_INET => IpAddr::V4(Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3])),
                    libc::AF_INET6 => {
                        let mut bytes = [0u8; 16];
                        bytes.copy_from_slice(dst);
                        let v6 = Ipv6Addr::from(bytes);
                        // An IPv4 client on a dual-stack socket is that IPv4 client.
                        match v6.to_ipv4_mapped() {
                            Some(v4) => IpAddr::V4(v4),
                            None => IpAddr::V6(v6),
                        }
                    }
                    _ => continue,
                };
                into.push(ip);
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_addresses() {
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_socket("0100007F:1F90"),
                Some(("127.0.0.1".parse().unwrap(), 8080))
            );
            assert_eq!(
                parse_socket("00000000000000000000000001000000:0050"),
                Some(("::1".parse().unwrap(), 80))
            );
            assert_eq!(
                parse_socket("0000000000000000FFFF00000A00000A:01BB"),
                Some(("10.0.0.10".parse().unwrap(), 443))
            );
        }
        assert_eq!(parse_socket("zz:1"), None);
    }

    #[test]
    fn counts_established_to_the_ports() {
        let text = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 0100007F:C350 01 x\n   1: 0100007F:1F90 0200007F:C351 01 x\n   2: 0100007F:1F90 0200007F:C352 06 x\n   3: 0100007F:0016 0200007F:C353 01 x\n   4: 00000000:1F90 00000000:0000 0A x\n";
        let mut remotes = Vec::new();
        established_remotes(text, &[8080], &mut remotes);
        if cfg!(target_endian = "little") {
            assert_eq!(
                remotes,
                [
                    "127.0.0.1".parse::<IpAddr>().unwrap(),
                    "127.0.0.2".parse().unwrap()
                ]
            );
        }
    }

    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// Opens `n` connections from `from` (any port) to `listener` and accepts them; both ends
    /// are kept so every connection stays established.
    fn connect(
        listener: &TcpListener,
        from: Option<SocketAddr>,
        n: usize,
        keep: &mut Vec<TcpStream>,
    ) {
        let to = listener.local_addr().unwrap();
        for _ in 0..n {
            let client = match from {
                Some(from) => {
                    let s = socket2::Socket::new(
                        socket2::Domain::for_address(from),
                        socket2::Type::STREAM,
                        None,
                    )
                    .unwrap();
                    s.bind(&from.into()).unwrap();
                    s.connect(&to.into()).unwrap();
                    TcpStream::from(s)
                }
                None => TcpStream::connect(to).unwrap(),
            };
            let (server, _) = listener.accept().unwrap();
            keep.push(client);
            keep.push(server);
        }
    }

    fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
        v.sort();
        v
    }

    /// What netlink and the files say about the same ports, one right after the other; None
    /// where netlink is not allowed (said on stderr: the comparison then cannot run).
    fn both(ports: &[u16]) -> Option<(Vec<IpAddr>, Vec<IpAddr>)> {
        use std::io::Write;
        let mut netlink = Vec::new();
        if let Err(e) =
            SockDiag::open().and_then(|mut d| d.established_remotes(ports, &mut netlink))
        {
            // Only a refusal skips: a malformed request (EINVAL) is this code's failure.
            let refused = [
                libc::EPERM,
                libc::EACCES,
                libc::EPROTONOSUPPORT,
                libc::EAFNOSUPPORT,
            ];
            assert!(refused.contains(&e.raw_os_error().unwrap_or(0)), "{e}");
            let _ = writeln!(
                std::io::stderr(),
                "netlink sock_diag unavailable, skipped: {e}"
            );
            return None;
        }
        let mut files = Vec::new();
        proc_remotes(Path::new("/proc"), ports, &mut String::new(), &mut files).unwrap();
        Some((sorted(netlink), sorted(files)))
    }

    /// 355 loopback connections to four listeners (IPv4, IPv6, dual-stack, and one not asked
    /// for), from three client addresses: netlink reads what the files say, and what was opened.
    #[test]
    fn netlink_reads_what_proc_says_on_live_loopback() {
        let mut keep = Vec::new();
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        connect(&v4, None, 290, &mut keep);
        connect(&v4, Some("127.0.0.2:0".parse().unwrap()), 10, &mut keep);
        connect(&other, None, 20, &mut keep);
        let mut ports = vec![v4.local_addr().unwrap().port()];
        let mut expected = vec!["127.0.0.1".parse::<IpAddr>().unwrap(); 290];
        expected.extend(vec!["127.0.0.2".parse::<IpAddr>().unwrap(); 10]);
        // IPv6 where the host has it: ::1 clients, and IPv4 clients of a dual-stack socket.
        let v6 = TcpListener::bind("[::1]:0").ok();
        let dual = TcpListener::bind("[::]:0").ok();
        if let (Some(v6), Some(dual)) = (&v6, &dual) {
            connect(v6, None, 50, &mut keep);
            let dual_port = dual.local_addr().unwrap().port();
            for _ in 0..5 {
                keep.push(TcpStream::connect(("127.0.0.1", dual_port)).unwrap());
                keep.push(dual.accept().unwrap().0);
            }
            ports.push(v6.local_addr().unwrap().port());
            ports.push(dual_port);
            expected.extend(vec!["::1".parse::<IpAddr>().unwrap(); 50]);
            expected.extend(vec!["127.0.0.1".parse::<IpAddr>().unwrap(); 5]);
        }
        let Some((netlink, files)) = both(&ports) else {
            return;
        };
        assert_eq!(netlink, files);
        assert_eq!(netlink, sorted(expected.clone()));
        // The kernel filtered: it sent only the server ends on the ports, not the client ends
        // nor the other listener's.
        let mut diag = SockDiag::open().unwrap();
        let mut only_v4 = Vec::new();
        diag.established_remotes(&ports[..1], &mut only_v4).unwrap();
        assert_eq!((only_v4.len(), diag.sent), (300, 300));

        // More ports than the kernel filter takes: the same answer, filtered here.
        // The padding is ports of idle listeners the test holds: other ports could carry the
        // machine's own connections, which may come and go between the two reads.
        let idle: Vec<TcpListener> = (0..MAX_BYTECODE_PORTS + 100)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut many = ports.clone();
        many.extend(idle.iter().map(|l| l.local_addr().unwrap().port()));
        let (netlink, files) = both(&many).unwrap();
        assert_eq!(netlink, files);
        assert!(netlink.len() >= expected.len());

        // The probe itself reads netlink and reports the counts.
        let mut probe = ConnectionsProbe::new(
            ProcRoot {
                proc: "/proc".into(),
                sys: "/sys".into(),
            },
            ports.clone(),
            "web",
        );
        assert!(probe.reads_netlink());
        let mut out = Output::default();
        probe.collect(&mut out).unwrap();
        assert!(probe.reads_netlink());
        let values: Vec<f64> = out.metrics.iter().map(|(_, v)| *v).collect();
        let distinct = if v6.is_some() { 3.0 } else { 2.0 };
        let busiest = if v6.is_some() { 295.0 } else { 290.0 };
        assert_eq!(values, [expected.len() as f64, distinct, busiest]);

        // Reading the files gives the same figures.
        let mut files = ConnectionsProbe::from_files(
            ProcRoot {
                proc: "/proc".into(),
                sys: "/sys".into(),
            },
            ports,
            "web",
        );
        let mut out_files = Output::default();
        files.collect(&mut out_files).unwrap();
        assert_eq!(out.metrics, out_files.metrics);
    }

    /// A proc root other than `/proc` is another tree (a container watching its host):
    /// netlink would answer for runner's own namespace, so the files are read.
    #[test]
    fn another_proc_root_reads_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        std::fs::write(
            dir.path().join("net/tcp"),
            "  sl  local_address rem_address   st\n   0: 0100007F:1F90 0200007F:C350 01 x\n",
        )
        .unwrap();
        let root = ProcRoot {
            proc: dir.path().into(),
            sys: "/sys".into(),
        };
        let mut probe = ConnectionsProbe::new(root, vec![8080], "web");
        assert!(!probe.reads_netlink());
        let mut out = Output::default();
        probe.collect(&mut out).unwrap();
        let values: Vec<f64> = out.metrics.iter().map(|(_, v)| *v).collect();
        if cfg!(target_endian = "little") {
            assert_eq!(values, [1.0, 1.0, 1.0]);
        }
    }

    #[test]
    fn port_filter_jumps_to_the_end_or_the_next_port() {
        let code = port_filter(&[80, 443]);
        assert_eq!(code.len(), 36);
        // GE 80: miss → the next port's GE at 20; LE 80: miss → 20; match → the jump at 16,
        // which lands on the end (36).
        assert_eq!(&code[0..2], &[INET_DIAG_BC_S_GE, 8]);
        assert_eq!(u16_at(&code, 2), 20);
        assert_eq!(u16_at(&code, 6), 80);
        assert_eq!(u16_at(&code, 10), 12);
        assert_eq!(code[16], INET_DIAG_BC_JMP);
        assert_eq!(16 + usize::from(u16_at(&code, 18)), 36);
        // The last port's misses land 4 past the end: rejected.
        assert_eq!(20 + usize::from(u16_at(&code, 22)), 40);
        assert_eq!(28 + usize::from(u16_at(&code, 30)), 40);
    }
}
