//! Peer-to-peer transport: the wire format and handshake (`wire`), the sending end of
//! peer connections (`sender`: the core thread writes, a helper thread per peer dials and
//! writes what the socket would not take at once), and the receiving end (`receiver`: the
//! core thread reads every peer connection in the poll it sleeps in). Connections arrive
//! on the node's single port; `listener` tells peers from clients.

pub mod receiver;
pub mod sender;
pub mod wire;

pub use receiver::{PeerContext, PeerInbox};
pub use sender::PeerSender;
pub use wire::Hello;
