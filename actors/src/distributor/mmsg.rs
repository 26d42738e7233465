//! One datagram to many addresses in one system call: `sendmmsg(2)` on Linux, a loop of
//! `send_to` elsewhere.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Addresses prepared once for the system call.
#[derive(Default)]
pub struct Targets {
    addrs: Vec<SocketAddr>,
    #[cfg(target_os = "linux")]
    raw: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
}

impl Targets {
    /// `addrs`, prepared.
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        Self {
            #[cfg(target_os = "linux")]
            raw: addrs.iter().map(raw_address).collect(),
            addrs,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Sends `datagram` to every address from `socket`; the addresses that failed, with
    /// why. A socket that would block counts as a failure for the rest (UDP does not
    /// wait).
    pub fn send(&mut self, socket: &UdpSocket, datagram: &[u8]) -> Vec<(SocketAddr, io::Error)> {
        self.send_many(socket, &[datagram])
            .into_iter()
            .map(|(_, addr, e)| (addr, e))
            .collect()
    }

    /// Sends each of `datagrams` to every address, in as few system calls as the kernel
    /// takes (1,024 messages each); what failed: (datagram index, address, why).
    pub fn send_many(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[&[u8]],
    ) -> Vec<(usize, SocketAddr, io::Error)> {
        #[cfg(target_os = "linux")]
        {
            self.send_mmsg(socket, datagrams)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mut failed = Vec::new();
            for (d, datagram) in datagrams.iter().enumerate() {
                for a in &self.addrs {
                    if let Err(e) = socket.send_to(datagram, a) {
                        failed.push((d, *a, e));
                    }
                }
            }
            failed
        }
    }

    #[cfg(target_os = "linux")]
    fn send_mmsg(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[&[u8]],
    ) -> Vec<(usize, SocketAddr, io::Error)> {
        use std::os::fd::AsRawFd;
        let targets = self.addrs.len();
        if targets == 0 {
            return Vec::new();
        }
        // Built whole before any pointer into them is taken: they do not move after.
        let mut iovs: Vec<libc::iovec> = datagrams
            .iter()
            .map(|d| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let iov_base = iovs.as_mut_ptr();
        let addr_base = self.raw.as_mut_ptr();
        let mut messages: Vec<libc::mmsghdr> = (0..datagrams.len() * targets)
            .map(|i| {
                let (d, t) = (i / targets, i % targets);
                // SAFETY: an all-zero msghdr is a valid empty one; the fields set below
                // point into `iovs` and `self.raw`, which outlive the call and do not move.
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                unsafe {
                    header.msg_name = addr_base.add(t).cast();
                    header.msg_namelen = self.raw[t].1;
                    header.msg_iov = iov_base.add(d);
                }
                header.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: header,
                    msg_len: 0,
                }
            })
            .collect();
        let mut failed = Vec::new();
        let mut done = 0;
        while done < messages.len() {
            let left = (messages.len() - done).min(1024) as libc::c_uint;
            // SAFETY: `messages[done..]` holds at least `left` initialised headers.
            let sent = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    messages.as_mut_ptr().add(done),
                    left,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A full socket buffer stays full for the rest: they fail now, not one
                // system call each.
                if error.kind() == io::ErrorKind::WouldBlock {
                    for i in done..messages.len() {
                        failed.push((
                            i / targets,
                            self.addrs[i % targets],
                            io::Error::from(io::ErrorKind::WouldBlock),
                        ));
                    }
                    break;
                }
                // The first message not sent failed: say so, go on with the next.
                failed.push((done / targets, self.addrs[done % targets], error));
                done += 1;
            } else {
                done += sent as usize;
            }
        }
        drop(iovs);
        failed
    }
}

#[cfg(target_os = "linux")]
fn raw_address(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; it is filled as the family says.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let raw = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), raw) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let raw = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), raw) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` receivers on loopback (reads time out after 5 s), and their addresses as targets.
    fn receivers(n: usize) -> (Vec<UdpSocket>, Targets) {
        let receivers: Vec<UdpSocket> = (0..n)
            .map(|_| {
                let r = UdpSocket::bind("127.0.0.1:0").expect("bind");
                r.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .expect("timeout");
                r
            })
            .collect();
        let targets = Targets::new(
            receivers
                .iter()
                .map(|r| r.local_addr().expect("addr"))
                .collect(),
        );
        (receivers, targets)
    }

    #[test]
    fn several_datagrams_reach_every_address_in_order() {
        let (receivers, mut targets) = receivers(2);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sent: [&[u8]; 3] = [b"one", b"two", b"three"];
        assert!(targets.send_many(&socket, &sent).is_empty());
        for r in &receivers {
            let mut got = Vec::new();
            for _ in 0..3 {
                let mut buf = [0u8; 16];
                let n = r.recv(&mut buf).expect("a datagram");
                got.push(buf[..n].to_vec());
            }
            assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        }
    }

    #[test]
    fn one_call_reaches_every_address_of_both_families() {
        let (receivers, mut targets) = receivers(3);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(targets.send(&socket, b"hello").is_empty());
        for r in &receivers {
            let mut buf = [0u8; 16];
            let (n, from) = r.recv_from(&mut buf).expect("a datagram");
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, socket.local_addr().expect("addr"));
        }
        if let Ok(v6) = UdpSocket::bind("[::1]:0") {
            v6.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            let mut targets = Targets::new(vec![v6.local_addr().expect("addr")]);
            let sender = UdpSocket::bind("[::1]:0").expect("bind");
            assert!(targets.send(&sender, b"six").is_empty());
            let mut buf = [0u8; 8];
            assert_eq!(v6.recv(&mut buf).expect("a datagram"), 3);
        }
    }
}
