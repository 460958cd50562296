//! The node's one port. Clients and peers share it: the client front end accepts every
//! connection and tells peers from clients by their first line (a peer's is a
//! `peer_hello`, see `transport::wire`), handing peers to the core thread.

use crate::client::frontend::FrontEnd;
use crate::client::{AnswerSink, ClientContext};
use crate::transport::PeerContext;
use std::io;
use std::net::TcpListener;
use std::thread::JoinHandle;

/// Everything the front end needs.
#[derive(Clone)]
pub struct ListenerContext {
    pub peer: PeerContext,
    pub client: ClientContext,
}

/// Starts the client front end on its own thread; returns where the core thread sends
/// answers, and the thread, which ends once a stopping node's clients have their answers.
pub fn spawn(
    listener: TcpListener,
    context: ListenerContext,
) -> io::Result<(AnswerSink, JoinHandle<()>)> {
    let front_end = FrontEnd::new(listener, context.client, context.peer)?;
    let sink = front_end.sink();
    let thread = std::thread::Builder::new()
        .name("clients".into())
        .spawn(move || front_end.run())?;
    Ok((sink, thread))
}
