//! The core thread's senders, one per peer it talks to, started and stopped as the
//! configuration changes.
//!
//! The peers are the members of the configuration in force but this node
//! ([`Peers::follow`]), plus any node the core must answer that it does not name, started
//! on the first message to it ([`Peers::sender`]): the leader of a node that joined and is
//! still catching up with the log, whose configuration in force does not name that leader
//! yet. A sender whose peer left the configuration is dropped; its helper thread closes the
//! connection and exits.

use super::auth::ClusterSecrets;
use super::sender::PeerSender;
use super::wire::Hello;
use replog_core::NodeId;
use rustls::ClientConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::{info, warn};

/// What every sender dials with.
pub struct Dialer {
    pub hello: Arc<Hello>,
    pub secrets: Arc<ClusterSecrets>,
    pub tls: Option<Arc<ClientConfig>>,
    /// At most this many batches wait for a slow or absent peer.
    pub queue_batches: usize,
}

/// Invariant: each sender dials the address it is keyed with.
pub struct Peers {
    dialer: Dialer,
    senders: BTreeMap<NodeId, (String, PeerSender)>,
}

impl Peers {
    pub fn new(dialer: Dialer) -> Peers {
        Peers {
            dialer,
            senders: BTreeMap::new(),
        }
    }

    /// Makes the senders exactly `peers` (ids and addresses): starts the missing ones,
    /// restarts one whose address changed, drops the rest.
    pub fn follow(&mut self, peers: &[(NodeId, String)]) {
        let wanted: BTreeMap<NodeId, &String> =
            peers.iter().map(|(id, addr)| (*id, addr)).collect();
        self.senders.retain(|id, (addr, _)| {
            let keep = wanted.get(id).is_some_and(|wanted| *wanted == addr);
            if !keep {
                info!(
                    "peer n{} at {addr}: no longer a peer, connection dropped",
                    id.0
                );
            }
            keep
        });
        for (&id, addr) in &wanted {
            if !self.senders.contains_key(&id) {
                self.start(id, addr);
            }
        }
    }

    /// The sender for `peer`, started now at the address `addr` gives if there is none
    /// yet; `None` when no address is known (or no thread could be started).
    pub fn sender(
        &mut self,
        peer: NodeId,
        addr: impl FnOnce() -> Option<String>,
    ) -> Option<&mut PeerSender> {
        if !self.senders.contains_key(&peer) {
            let addr = addr()?;
            self.start(peer, &addr);
        }
        self.senders.get_mut(&peer).map(|(_, sender)| sender)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut PeerSender> {
        self.senders.values_mut().map(|(_, sender)| sender)
    }

    pub fn get(&self, peer: NodeId) -> Option<&PeerSender> {
        self.senders.get(&peer).map(|(_, sender)| sender)
    }

    fn start(&mut self, id: NodeId, addr: &str) {
        let dialer = &self.dialer;
        let spawned = PeerSender::spawn(
            id,
            addr.to_string(),
            dialer.hello.clone(),
            dialer.secrets.clone(),
            dialer.tls.clone(),
            dialer.queue_batches,
        );
        match spawned {
            Ok(sender) => {
                self.senders.insert(id, (addr.to_string(), sender));
            }
            Err(error) => warn!("peer n{} at {addr}: cannot start its sender: {error}", id.0),
        }
    }
}
