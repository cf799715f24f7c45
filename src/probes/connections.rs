//! `connections`: established TCP connections to local ports, IPv4 and IPv6, from
//! `/proc/net/tcp` and `/proc/net/tcp6`: a server's live sessions, how many distinct clients
//! hold them, and how many the busiest client holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

pub struct ConnectionsProbe {
    root: ProcRoot,
    ports: Vec<u16>,
    instance: String,
    names: Names,
    buf: String,
}

impl ConnectionsProbe {
    pub fn new(root: ProcRoot, ports: Vec<u16>, instance: &str) -> Self {
        ConnectionsProbe {
            root,
            ports,
            instance: instance.to_string(),
            names: Names::new("connections"),
            buf: String::new(),
        }
    }

    pub fn collect(&mut self, out: &mut Output) -> Result<(), String> {
        let mut remotes = Vec::new();
        let mut read_any = false;
        for file in ["net/tcp", "net/tcp6"] {
            // A host without IPv6 has no tcp6: that is not an error.
            if read_into(&self.root.proc.join(file), &mut self.buf).is_ok() {
                read_any = true;
                established_remotes(&self.buf, &self.ports, &mut remotes);
            }
        }
        if !read_any {
            return Err("cannot read /proc/net/tcp or /proc/net/tcp6".into());
        }
        let mut per_remote: HashMap<IpAddr, u64> = HashMap::new();
        for ip in &remotes {
            *per_remote.entry(*ip).or_default() += 1;
        }
        let names = self.names.get(&self.instance, TYPE.fields);
        out.push(&names[0], remotes.len() as f64);
        out.push(&names[1], per_remote.len() as f64);
        out.push(
            &names[2],
            per_remote.values().copied().max().unwrap_or(0) as f64,
        );
        Ok(())
    }
}

impl super::Read for ConnectionsProbe {
    fn read(&mut self, out: &mut Output, _deadline: std::time::Instant) -> Result<(), String> {
        self.collect(out)
    }
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
}
