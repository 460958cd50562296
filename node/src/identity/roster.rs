//! The members while the node runs: the one owner of "who may connect as whom". The peer
//! hello's claim is checked here, and a peer's name is learned here from its first hello
//! and recorded in `cluster.json`.
//!
//! A claim is refused when it comes from another cluster (another name or id), names an
//! id the membership does not hold or this node's own, comes from an address other than
//! the one its id was founded with, or carries a name that disagrees with the one recorded
//! for its id, or that another member already holds. The first of two nodes claiming one
//! name wins; the second is refused for as long as this node runs and, once the name is
//! recorded, after restarts too.

use super::name::{ClusterId, NodeName};
use super::record::{self, Record};
use crate::config::Members;
use replog_core::{MembershipCheckpoint, NodeId};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{info, warn};

/// What a peer's hello says it is.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub cluster: &'a str,
    pub cluster_id: &'a ClusterId,
    pub id: NodeId,
    pub name: &'a NodeName,
    /// The address it says peers reach it at.
    pub addr: &'a str,
}

/// Shared by the handshake (which checks claims and learns names) and the core thread
/// (which shows the members in `status`).
pub struct Roster {
    cluster: String,
    cluster_id: ClusterId,
    node_dir: PathBuf,
    /// Invariant: the recorded members plus names learned since from hellos and from
    /// configuration entries (`membership::learn`); a name once known for an id changes
    /// only when a configuration gives the id to another node.
    members: Arc<Mutex<Members>>,
    /// Held while `cluster.json` is written, so that writes from several learning threads
    /// never interleave and the last one holds every name learned before it.
    writing: Arc<Mutex<()>>,
}

impl Roster {
    pub fn new(record: Record, node_dir: PathBuf) -> Roster {
        Roster {
            cluster: record.cluster,
            cluster_id: record.cluster_id,
            node_dir,
            members: Arc::new(Mutex::new(record.members)),
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// The cluster's name (`--cluster`).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }

    /// The members and every name known so far.
    pub fn members(&self) -> Members {
        lock(&self.members).clone()
    }

    /// The address member `id` is reached at, if the book knows it.
    pub fn addr_of(&self, id: NodeId) -> Option<String> {
        lock(&self.members).addr_of(id).map(str::to_string)
    }

    /// Learns the members of a configuration this node appended, recovered or was
    /// installed (`membership::learn`), and records them in `cluster.json` if the book
    /// changed, off this thread (the core thread's).
    pub fn learn(&self, checkpoint: &MembershipCheckpoint) {
        let mut members = lock(&self.members);
        if crate::membership::learn(&mut members, checkpoint) {
            info!(
                "members now {} (configuration at index {})",
                members.describe_named(),
                checkpoint.index.0
            );
            self.record_soon(members);
        }
    }

    /// Checks a peer's claim (see the module docs), changing nothing: the peer's id if it
    /// may be admitted.
    pub fn check(&self, claim: Claim) -> Result<NodeId, String> {
        self.judge(claim, false)
    }

    /// Checks a claim again and admits it: a name heard for the first time is learned and
    /// recorded, off this thread (the caller may be the client front end, which must never
    /// block on a disk). Called only once the peer has proved the cluster secret, if there
    /// is one, so that no stranger can take a name.
    pub fn admit(&self, claim: Claim) -> Result<NodeId, String> {
        self.judge(claim, true)
    }

    fn judge(&self, claim: Claim, learn: bool) -> Result<NodeId, String> {
        let addr = claim.addr;
        if claim.cluster != self.cluster || *claim.cluster_id != self.cluster_id {
            return Err(format!(
                "peer at {addr} belongs to cluster {:?} (id {}), this node to {:?} (id {})",
                claim.cluster, claim.cluster_id, self.cluster, self.cluster_id
            ));
        }
        let mut members = lock(&self.members);
        let id = claim.id;
        if id == members.own_id {
            return Err(format!(
                "peer at {addr} claims this node's own id {} (this node is {} at {})",
                id.0,
                members.own_name(),
                members.own_addr()
            ));
        }
        let Some(known_addr) = members.addr_of(id) else {
            return Err(format!(
                "peer {} at {addr} claims node id {}, which is not a member ({})",
                claim.name,
                id.0,
                members.describe_named()
            ));
        };
        if known_addr != addr {
            return Err(format!(
                "peer {} claims node id {} from {addr}, but node {} is at {known_addr}",
                claim.name, id.0, id.0
            ));
        }
        if let Some(holder) = members.id_named(claim.name).filter(|&holder| holder != id) {
            return Err(format!(
                "peer at {addr} (node {}) claims the name {}, which is node {}'s at {}",
                id.0, claim.name, holder.0, members.addrs[&holder]
            ));
        }
        match members.name_of(id) {
            Some(known) if known == claim.name => Ok(id),
            Some(known) => Err(format!(
                "peer at {addr} (node {}) calls itself {}, but node {} is {known}",
                id.0, claim.name, id.0
            )),
            None => {
                if let Some(number) = claim.name.number().filter(|&number| number != id) {
                    return Err(format!(
                        "peer at {addr} (node {}) calls itself {}, the number of node {}",
                        id.0, claim.name, number.0
                    ));
                }
                if !learn {
                    return Ok(id);
                }
                members.names.insert(id, claim.name.clone());
                info!("peer n{} at {addr} is named {}", id.0, claim.name);
                self.record_soon(members);
                Ok(id)
            }
        }
    }

    /// Writes `cluster.json` with the members on a thread of its own.
    fn record_soon(&self, members: MutexGuard<'_, Members>) {
        drop(members);
        let (cluster, cluster_id) = (self.cluster.clone(), self.cluster_id.clone());
        let (dir, writing, members) = (
            self.node_dir.clone(),
            self.writing.clone(),
            self.members.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("record-names".into())
            .spawn(move || {
                let _writing = lock(&writing);
                // Taken under the write lock: whichever write comes last holds every name
                // learned before it.
                let record = Record {
                    cluster,
                    cluster_id,
                    members: lock(&members).clone(),
                };
                if let Err(error) = record::write(&dir, &record) {
                    warn!("cannot record the members' names: {error}");
                }
            });
        if let Err(error) = spawned {
            warn!("cannot record the members' names: no thread: {error}");
        }
    }
}

/// A lock that a panic elsewhere does not poison for good: the map stays consistent, since
/// every change to it is one insert.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(dir: &std::path::Path) -> Roster {
        let own = NodeName::parse("node1").unwrap();
        let peers = vec!["127.0.0.1:8081".into(), "127.0.0.1:8082".into()];
        let members = Members::resolve(&own, "127.0.0.1:8080", &peers).unwrap();
        let record = Record {
            cluster: "replog".into(),
            cluster_id: ClusterId::parse("c1").unwrap(),
            members,
        };
        Roster::new(record, dir.to_path_buf())
    }

    fn check(roster: &Roster, id: u64, name: &str, addr: &str) -> Result<NodeId, String> {
        let name = NodeName::parse(name).unwrap();
        roster.admit(Claim {
            cluster: "replog",
            cluster_id: &ClusterId::parse("c1").unwrap(),
            id: NodeId(id),
            name: &name,
            addr,
        })
    }

    #[test]
    fn a_name_is_learned_once_and_then_held_against_other_claims() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster(dir.path());
        assert_eq!(check(&roster, 2, "node2", "127.0.0.1:8081"), Ok(NodeId(2)));
        assert_eq!(check(&roster, 2, "node2", "127.0.0.1:8081"), Ok(NodeId(2)));
        let renamed = check(&roster, 2, "other", "127.0.0.1:8081").unwrap_err();
        assert!(renamed.contains("but node 2 is node2"), "{renamed}");
        let second = check(&roster, 3, "node2", "127.0.0.1:8082").unwrap_err();
        assert!(
            second.contains("claims the name node2, which is node 2's at 127.0.0.1:8081"),
            "{second}"
        );
        let moved = check(&roster, 2, "node2", "127.0.0.1:9999").unwrap_err();
        assert!(moved.contains("but node 2 is at 127.0.0.1:8081"), "{moved}");
        let own = check(&roster, 1, "node9", "127.0.0.1:8080").unwrap_err();
        assert!(own.contains("this node's own id 1"), "{own}");
        let stranger = check(&roster, 4, "node4", "127.0.0.1:8083").unwrap_err();
        assert!(stranger.contains("not a member"), "{stranger}");
        let numbered = check(&roster, 3, "2", "127.0.0.1:8082").unwrap_err();
        assert!(numbered.contains("the number of node 2"), "{numbered}");
        assert_eq!(
            roster.members().describe_named(),
            "1=node1@127.0.0.1:8080,2=node2@127.0.0.1:8081,3=?@127.0.0.1:8082"
        );
    }

    #[test]
    fn a_claim_only_checked_teaches_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster(dir.path());
        let name = NodeName::parse("node2").unwrap();
        let claim = Claim {
            cluster: "replog",
            cluster_id: &ClusterId::parse("c1").unwrap(),
            id: NodeId(2),
            name: &name,
            addr: "127.0.0.1:8081",
        };
        assert_eq!(roster.check(claim), Ok(NodeId(2)));
        assert_eq!(roster.members().name_of(NodeId(2)), None);
        assert_eq!(check(&roster, 2, "other", "127.0.0.1:8081"), Ok(NodeId(2)));
    }

    #[test]
    fn another_cluster_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster(dir.path());
        let name = NodeName::parse("node2").unwrap();
        let error = roster
            .check(Claim {
                cluster: "replog",
                cluster_id: &ClusterId::parse("c2").unwrap(),
                id: NodeId(2),
                name: &name,
                addr: "127.0.0.1:8081",
            })
            .unwrap_err();
        assert_eq!(
            error,
            "peer at 127.0.0.1:8081 belongs to cluster \"replog\" (id c2), this node to \
             \"replog\" (id c1)"
        );
    }

    #[test]
    fn a_learned_name_is_recorded_in_cluster_json() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster(dir.path());
        check(&roster, 3, "node3", "127.0.0.1:8082").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let recorded = record::read(dir.path()).unwrap();
            if let Some(recorded) = recorded {
                let name = recorded.members.name_of(NodeId(3)).map(NodeName::to_string);
                if name.as_deref() == Some("node3") {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "never recorded");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
