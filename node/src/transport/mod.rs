//! Peer-to-peer transport: the wire format (`wire`), mutual TLS on the links
//! (`peer_tls`), the handshake at both ends (`handshake`) and its proofs of the cluster
//! secret (`auth`), the sending end of
//! peer connections (`sender`: the core thread writes, a helper thread per peer dials and
//! writes what the socket would not take at once), and the receiving end (`receiver`: the
//! core thread reads every peer connection in the poll it sleeps in). Connections arrive
//! on the node's single port; `listener` tells peers from clients.

pub mod auth;
pub mod handshake;
pub mod peer_tls;
pub mod peers;
pub mod receiver;
pub mod sender;
mod socket;
pub mod wire;

pub use auth::ClusterSecrets;
pub use peers::{Dialer, Peers};
pub use receiver::{PeerContext, PeerInbox};
pub use sender::PeerSender;
pub use wire::Hello;
