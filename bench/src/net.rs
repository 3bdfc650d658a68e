//! Outgoing TCP connections from several loopback source addresses.
//!
//! Every connection to one server address needs its own local port, and one
//! source address has about 28,000 ephemeral ports (32768–60999), fewer once
//! earlier runs leave sockets in TIME_WAIT. Binding connection `i` to
//! `127.0.0.(1 + i mod n)` gives each source address its own port range, so
//! tens of thousands of connections never run out. The whole 127/8 block is
//! routed to the loopback interface on Linux, so nothing needs setting up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// The loopback source addresses connections are spread over.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    count: u8,
}

impl Sources {
    pub fn new(count: u8) -> Self {
        Self {
            count: count.clamp(1, 250),
        }
    }

    /// The source address of connection number `i`.
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (i % self.count as usize) as u8,
        ))
    }

    /// A TCP connection to `server` from the source address of connection `i`.
    pub async fn connect(&self, i: usize, server: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.ip(i), 0))?;
        let stream = socket.connect(server).await?;
        // Small frames are the whole workload: never hold them back.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
