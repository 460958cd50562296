//! The node's one port: accepts connections and tells peers from clients by their first
//! line (a peer's is a `peer_hello`, see `transport::wire`), then serves each on its own
//! thread.

use crate::client::connection::{self, ClientContext};
use crate::client::lines::{read_line_limited, LineRead};
use crate::client::protocol::{ParsedLine, Request};
use crate::transport::{receiver, PeerContext};
use crate::{debug, warn};
use std::io::{self, BufReader};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Everything a connection thread needs.
#[derive(Clone)]
pub struct ListenerContext {
    pub peer: PeerContext,
    pub client: ClientContext,
}

/// Starts the accept loop on its own thread.
pub fn spawn(listener: TcpListener, context: ListenerContext) -> io::Result<()> {
    std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || accept_loop(listener, context))?;
    Ok(())
}

fn accept_loop(listener: TcpListener, context: ListenerContext) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let context = context.clone();
                let spawned = std::thread::Builder::new()
                    .name("connection".into())
                    .spawn(move || serve(stream, context));
                if let Err(error) = spawned {
                    warn!("cannot start a connection thread: {error}");
                }
            }
            Err(error) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                warn!("accept failed: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn serve(stream: TcpStream, context: ListenerContext) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut first = Vec::new();
    let max_line = context.client.max_line_bytes;
    let read = match read_line_limited(&mut reader, &mut first, max_line) {
        Ok(read) => read,
        Err(error) => {
            debug!("connection closed before its first line: {error}");
            return;
        }
    };
    if read == LineRead::Line && matches!(Request::parse(&first), ParsedLine::PeerHello) {
        receiver::serve(stream, reader, &first, context.peer);
    } else {
        connection::serve(stream, reader, (read, first), context.client);
    }
}
