//! Mutual TLS on peer links (`--tls-cert`, `--tls-key`, `--tls-ca`).
//!
//! A node with TLS dials its peers over TLS ([`dial`]): it checks the peer's certificate
//! against `--tls-ca` for the host of the address it dialled, and presents its own
//! certificate as a client certificate. Its port takes a `peer_hello` only over TLS with
//! a client certificate that `--tls-ca` signed ([`check_accepted`]); clients may come
//! without one. Both checks come before the peer handshake's (`handshake`), so a
//! connection that fails them never has its hello read as a peer's. The cluster secret
//! (`auth`) stays a second, independent check: TLS shows that a peer holds a certificate
//! of the cluster's CA, the secret that it knows what only the cluster's nodes know.

use super::handshake::{DialFailure, HELLO_TIMEOUT};
use crate::tls::stream::Socket;
use crate::tls::{host_of, Stream, TlsStream};
use rustls::ClientConfig;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;

/// Starts the link's TLS session on a fresh connection to `addr` (blocking, within
/// [`HELLO_TIMEOUT`]); without `tls`, the link stays plaintext. The peer handshake runs
/// over what this returns.
pub fn dial(
    socket: TcpStream,
    tls: Option<&Arc<ClientConfig>>,
    addr: &str,
) -> Result<Stream<TcpStream>, DialFailure> {
    let Some(config) = tls else {
        return Ok(Stream::Plain(socket));
    };
    let failure = |problem: String, answered: bool| DialFailure { problem, answered };
    let timeouts = socket
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .and_then(|()| socket.set_write_timeout(Some(HELLO_TIMEOUT)));
    if let Err(error) = timeouts {
        return Err(failure(format!("could not be dialled: {error}"), false));
    }
    // A name TLS cannot check is a mistake in the member list: a person must fix it.
    let mut tls = TlsStream::client(socket, config.clone(), host_of(addr))
        .map_err(|error| failure(format!("cannot be checked over TLS: {error}"), true))?;
    match tls.handshake() {
        Ok(()) => Ok(Stream::Tls(Box::new(tls))),
        Err(error) => Err(handshake_failure(&error)),
    }
}

/// Words a failed TLS handshake for the log, and says whether the peer answered.
fn handshake_failure(error: &io::Error) -> DialFailure {
    let within = HELLO_TIMEOUT.as_secs();
    let (problem, answered) = match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => (
            format!("did not answer our TLS handshake within {within} s"),
            false,
        ),
        // A plaintext node closes a connection that starts with a TLS record.
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => (
            "closed the connection during our TLS handshake: does it run without \
             --tls-cert? (the peers of a node with --tls-cert need it too)"
                .to_string(),
            true,
        ),
        _ => (
            format!(
                "failed the TLS handshake: {error} (its certificate must be signed by our \
                 --tls-ca, and ours by its)"
            ),
            true,
        ),
    };
    DialFailure { problem, answered }
}

/// Whether a connection that sent a `peer_hello` may go on to the peer handshake: on a
/// port that speaks TLS (`tls_required`), only over TLS with a verified client
/// certificate. The error is worded for the refusal line and the log.
pub fn check_accepted<S: Socket>(stream: &Stream<S>, tls_required: bool) -> Result<(), String> {
    if tls_required && !stream.is_tls() {
        return Err(
            "a plaintext peer_hello to a port that speaks TLS: start the peer with \
                    --tls-cert, --tls-key and --tls-ca"
                .into(),
        );
    }
    if stream.is_tls() && !stream.peer_certified() {
        return Err(
            "a peer_hello over TLS without a client certificate: peers must \
                    present one signed by this node's --tls-ca (start the peer with \
                    --tls-cert)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host_of_the_dialled_address() {
        assert_eq!(host_of("127.0.0.1:7001"), "127.0.0.1");
        assert_eq!(host_of("node-1.example:7001"), "node-1.example");
        assert_eq!(host_of("[::1]:7001"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn a_plaintext_peer_is_refused_by_a_tls_port_and_taken_by_a_plaintext_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let stream = Stream::Plain(socket);
        let refused = check_accepted(&stream, true).unwrap_err();
        assert!(refused.contains("plaintext peer_hello"), "{refused}");
        assert!(check_accepted(&stream, false).is_ok());
    }
}
