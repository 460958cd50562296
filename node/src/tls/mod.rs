//! TLS on the node's port, on its links to its peers (`transport::peer_tls`) and in its
//! clients (rustls, with the `ring` provider).
//!
//! `config` turns `--tls-cert`, `--tls-key` and `--tls-ca` into rustls configurations,
//! checked at start: a key that does not match its certificate, or a file that holds no
//! certificate, is an error naming the file. `stream` wraps a socket, plain or TLS,
//! behind `Read`/`Write`, for blocking and non-blocking sockets alike, so that the code
//! around it barely changes.
//!
//! The node's port tells TLS from plaintext by a connection's first byte (a TLS
//! handshake record starts with 22). A node with `--tls-cert` answers a plaintext client
//! with one `bad_request` line saying that the port speaks TLS, and closes; a plaintext
//! peer is refused by the peer handshake (`transport::peer_tls`).

pub mod config;
pub mod stream;

pub use config::{client_config, node_config, server_config, NodeTls, TlsFiles};
pub use stream::{Stream, TlsStream};

/// The host part of `addr` (`HOST:PORT`, `[V6]:PORT`), as TLS checks a certificate for:
/// clients check the node they dial, nodes the peers they dial.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The first byte of a TLS handshake record (ContentType `handshake`).
pub const HANDSHAKE_RECORD: u8 = 22;

/// What a connection's first byte says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstByte {
    /// Nothing has arrived yet.
    NotYet,
    /// Plaintext (or the end of input).
    Plain,
    /// A TLS handshake.
    Tls,
}

/// Looks at a connection's first byte without taking it.
pub fn first_byte(socket: &mio::net::TcpStream) -> std::io::Result<FirstByte> {
    let mut byte = [0u8; 1];
    match socket.peek(&mut byte) {
        Ok(0) => Ok(FirstByte::Plain),
        Ok(_) if byte[0] == HANDSHAKE_RECORD => Ok(FirstByte::Tls),
        Ok(_) => Ok(FirstByte::Plain),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Ok(FirstByte::NotYet),
        Err(error) => Err(error),
    }
}

/// The answer a node with `--tls-cert` gives a plaintext client before it closes.
pub const PLAINTEXT_REFUSED: &str = "this node's port speaks TLS (it runs with --tls-cert): \
                                     connect with TLS (e.g. replog ... --tls-ca FILE)";
