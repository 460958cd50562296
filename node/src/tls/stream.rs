//! A socket, plain or TLS, behind `Read` and `Write`.
//!
//! With a non-blocking socket the rules are those of the socket: `WouldBlock` from
//! `read` means the socket has nothing more (so an edge-triggered poll will report new
//! data), and `write` takes bytes only while the TLS records before them have gone out,
//! so that no more than one write's worth waits inside rustls. Such waiting records go
//! out on the next `write` or `flush`; [`Stream::wants_write`] says whether some wait.
//! Unlike plaintext, a short read does not mean the socket is empty: read on until
//! `WouldBlock` ([`Stream::is_tls`]).

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

/// A socket that can shut down its writing half (std's and mio's TCP streams).
pub trait Socket: Read + Write {
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Socket for std::net::TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        mio::net::TcpStream::shutdown(self, how)
    }
}

/// A TLS session over a socket.
pub struct TlsStream<S> {
    socket: S,
    tls: Connection,
    /// The socket reached its end of input.
    eof: bool,
    /// The writing half is shut down: records still waiting will never go.
    shut: bool,
}

impl<S: Socket> TlsStream<S> {
    /// The node's end of a connection.
    pub fn server(socket: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            socket,
            tls: tls.into(),
            eof: false,
            shut: false,
        })
    }

    /// A client's end, checking the node's certificate against `host` (a name or an IP
    /// address, as the target was given).
    pub fn client(socket: S, config: Arc<ClientConfig>, host: &str) -> io::Result<TlsStream<S>> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host} is not a name TLS can check a certificate against"),
            )
        })?;
        let tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream {
            socket,
            tls: tls.into(),
            eof: false,
            shut: false,
        })
    }

    /// Runs the handshake to its end (blocking sockets), so that a refused certificate is
    /// an error here, not on the first request.
    pub fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.send_records()?;
            if !self.tls.is_handshaking() {
                break;
            }
            if self.receive_records()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the node closed the connection during the TLS handshake (does it \
                     speak TLS?)",
                ));
            }
        }
        self.send_records()
    }

    /// Writes the TLS records rustls holds; `WouldBlock` if the socket took only some.
    fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Reads records from the socket and processes them; 0 at the socket's end.
    fn receive_records(&mut self) -> io::Result<usize> {
        let count = loop {
            match self.tls.read_tls(&mut self.socket) {
                Ok(count) => break count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        if count == 0 {
            self.eof = true;
        }
        if let Err(error) = self.tls.process_new_packets() {
            // Tell the other end why (the alert rustls queued), if the socket takes it.
            let _ = self.send_records();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: {error}"),
            ));
        }
        // A handshake answer, or a key update, may be due.
        match self.send_records() {
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => return Err(error),
            _ => {}
        }
        Ok(count)
    }

    fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(count) => return Ok(count),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // The other end closed without close_notify: an end of input all the same
                // (the line protocol does not rely on TLS to tell a truncation).
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) => return Err(error),
            }
            if self.eof {
                return Ok(0);
            }
            self.receive_records()?;
        }
    }

    fn write_plaintext(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_records()?;
        let count = self.tls.writer().write(buf)?;
        match self.send_records() {
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => Err(error),
            _ => Ok(count),
        }
    }
}

/// A socket as the client protocol uses it.
pub enum Stream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

impl<S: Socket> Stream<S> {
    pub fn socket(&self) -> &S {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => &tls.socket,
        }
    }

    pub fn socket_mut(&mut self) -> &mut S {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => &mut tls.socket,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// A TLS session still in its handshake: an error now is a refused handshake.
    pub fn is_handshaking(&self) -> bool {
        matches!(self, Stream::Tls(tls) if tls.tls.is_handshaking())
    }

    /// The other end presented a certificate, which rustls verified (a certificate that
    /// fails verification fails the handshake instead).
    pub fn peer_certified(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => {
                !tls.tls.is_handshaking()
                    && tls
                        .tls
                        .peer_certificates()
                        .is_some_and(|certs| !certs.is_empty())
            }
        }
    }

    /// The same stream over another type of socket (blocking std to mio and back), with
    /// whatever the TLS session holds: records to send, plaintext not yet read.
    pub fn map_socket<T: Socket>(self, convert: impl FnOnce(S) -> T) -> Stream<T> {
        match self {
            Stream::Plain(socket) => Stream::Plain(convert(socket)),
            Stream::Tls(tls) => {
                let TlsStream {
                    socket,
                    tls,
                    eof,
                    shut,
                } = *tls;
                Stream::Tls(Box::new(TlsStream {
                    socket: convert(socket),
                    tls,
                    eof,
                    shut,
                }))
            }
        }
    }

    /// TLS records are waiting for room in the socket.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => !tls.shut && tls.tls.wants_write(),
        }
    }

    /// Ends the writing half: TLS says so first (close_notify), as far as the socket
    /// takes it.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Stream::Tls(tls) = self {
            tls.tls.send_close_notify();
            let _ = tls.send_records();
            tls.shut = true;
        }
        self.socket().shutdown(Shutdown::Write)
    }
}

impl<S: Socket> Read for Stream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read(buf),
            Stream::Tls(tls) => tls.read_plaintext(buf),
        }
    }
}

impl<S: Socket> Write for Stream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write(buf),
            Stream::Tls(tls) => tls.write_plaintext(buf),
        }
    }

    /// Sends the TLS records waiting; `WouldBlock` if the socket took only some.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.flush(),
            Stream::Tls(tls) => tls.send_records(),
        }
    }
}
