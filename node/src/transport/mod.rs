//! Peer-to-peer transport: the wire format and handshake (`wire`), one sender thread per
//! peer (`sender`), and the receiving end of peer connections (`receiver`). Connections
//! arrive on the node's single port; `listener` tells peers from clients.

pub mod receiver;
pub mod sender;
pub mod wire;

pub use receiver::PeerContext;
pub use sender::PeerSender;
pub use wire::Hello;
