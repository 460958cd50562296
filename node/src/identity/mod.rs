//! Who this node is and which cluster it belongs to, fixed at its first start.
//!
//! The core's `NodeId` is a number that must be identical on every node and never change,
//! and adding a node later must not renumber anyone; so the mapping from names and
//! addresses to ids is worked out once, from the founding command line
//! (`config::Members::resolve`), and recorded in the node's directory (`record`,
//! `cluster.json`) with the cluster's name and id. Every later start takes it from there
//! ([`load`]) and checks the flags against it:
//! - `-i` picks the directory (`<data-dir>/<name>/`), so it always matches;
//! - `--cluster`, `--cluster-id` and `-a` that disagree are an error naming both: the
//!   directory belongs to another cluster, or peers know this node at another address;
//! - `-p`, when given, must describe the recorded members (ids and addresses; a name it
//!   gives where none is recorded yet is taken): a different list means another cluster,
//!   and running with either would leave nodes disagreeing about who votes. Without `-p`
//!   the recorded members are used, so a restart needs only `-i` and `--data-dir`.
//!
//! While the node runs, [`Roster`] holds the members and learns peers' names from their
//! hellos, and the hello checks against it (`roster`).

pub mod name;
pub mod record;
pub mod roster;

pub use name::{ClusterId, NodeName, NAME_RULE};
pub use record::Record;
pub use roster::{Claim, Roster};

use crate::config::Members;
use std::path::Path;

/// What the command line says about this node's identity.
pub struct Flags<'a> {
    /// `--cluster`.
    pub cluster: &'a str,
    /// `--cluster-id`; `None`: derived from the founding members at the first start.
    pub cluster_id: Option<&'a ClusterId>,
    /// The founding membership `-i`, `-a` and `-p` describe.
    pub members: &'a Members,
    /// Whether `-p` named any peer.
    pub peers_given: bool,
}

/// Where the identity a node runs with came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `cluster.json`, written at an earlier start.
    Recorded,
    /// The flags, at the node's first start: to be written.
    Founded,
    /// The flags, for a data directory from before `cluster.json` existed: to be written.
    Upgraded,
}

/// The identity to run with, and what to tell the operator about it.
#[derive(Debug)]
pub struct Loaded {
    pub record: Record,
    pub origin: Origin,
    /// Lines for the log (info level): what was taken from where.
    pub notes: Vec<String>,
}

/// The identity the node in `node_dir` runs with: the recorded one, checked against
/// `flags`, or the one the flags found (see the module docs). Reads only.
pub fn load(node_dir: &Path, flags: &Flags) -> Result<Loaded, String> {
    let Some(record) = record::read(node_dir)? else {
        let origin = if node_dir.join("metadata.json").exists() {
            Origin::Upgraded
        } else {
            Origin::Founded
        };
        return Ok(Loaded {
            record: founded(flags),
            origin,
            notes: Vec::new(),
        });
    };
    let shown = node_dir.display();
    if record.cluster != flags.cluster {
        return Err(format!(
            "data directory {shown} belongs to cluster {:?} (its cluster.json), but --cluster \
             says {:?}",
            record.cluster, flags.cluster
        ));
    }
    if let Some(given) = flags
        .cluster_id
        .filter(|given| **given != record.cluster_id)
    {
        return Err(format!(
            "data directory {shown} belongs to cluster id {} (its cluster.json), but \
             --cluster-id says {given}",
            record.cluster_id
        ));
    }
    let mut notes = Vec::new();
    let members = checked_members(node_dir, &record, flags, &mut notes)?;
    Ok(Loaded {
        record: Record { members, ..record },
        origin: Origin::Recorded,
        notes,
    })
}

/// The identity the flags describe at a first start.
fn founded(flags: &Flags) -> Record {
    let cluster_id = flags
        .cluster_id
        .cloned()
        .unwrap_or_else(|| ClusterId::derive(flags.cluster, &flags.members.fingerprint()));
    Record {
        cluster: flags.cluster.to_string(),
        cluster_id,
        members: flags.members.clone(),
    }
}

/// The recorded members, checked against `-i`, `-a` and `-p`, with any new names `-p`
/// gives.
fn checked_members(
    node_dir: &Path,
    record: &Record,
    flags: &Flags,
    notes: &mut Vec<String>,
) -> Result<Members, String> {
    let shown = node_dir.display();
    let (recorded, given) = (&record.members, flags.members);
    if recorded.own_name() != given.own_name() {
        return Err(format!(
            "{shown}/cluster.json belongs to node {} (id {}), not {}; was the directory \
             renamed?",
            recorded.own_name(),
            recorded.own_id.0,
            given.own_name()
        ));
    }
    if recorded.own_addr() != given.own_addr() {
        return Err(format!(
            "{shown}/cluster.json records this node at {}, but -a says {} (a node's address \
             is fixed at its first start: peers know it by that one)",
            recorded.own_addr(),
            given.own_addr()
        ));
    }
    if !flags.peers_given {
        notes.push(format!(
            "no -p given: the members are the recorded ones, {}",
            recorded.describe_named()
        ));
        return Ok(recorded.clone());
    }
    if recorded.fingerprint() != given.fingerprint() {
        return Err(format!(
            "data directory {shown} belongs to cluster {} founded with {} (its cluster.json), \
             but -a and -p describe {} (cluster {}); membership is fixed at a node's first \
             start: give the recorded peers (or no -p), or another --data-dir",
            record.cluster_id,
            recorded.fingerprint(),
            given.fingerprint(),
            ClusterId::derive(flags.cluster, &given.fingerprint())
        ));
    }
    let mut members = recorded.clone();
    for (&id, name) in &given.names {
        match recorded.name_of(id) {
            Some(known) if known != name => {
                return Err(format!(
                    "-p names node {} at {} {name}, but {shown}/cluster.json records it as \
                     {known}",
                    id.0, recorded.addrs[&id]
                ))
            }
            Some(_) => {}
            None => {
                members.names.insert(id, name.clone());
                notes.push(format!("-p names node {} {name}", id.0));
            }
        }
    }
    members.check_names().map_err(|error| error.0)?;
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(own: &str, addr: &str, peers: &[&str]) -> Members {
        let peers: Vec<String> = peers.iter().map(|peer| peer.to_string()).collect();
        Members::resolve(&NodeName::parse(own).unwrap(), addr, &peers).unwrap()
    }

    fn flags<'a>(members: &'a Members, peers_given: bool) -> Flags<'a> {
        Flags {
            cluster: "replog",
            cluster_id: None,
            members,
            peers_given,
        }
    }

    const PEERS: [&str; 2] = ["127.0.0.1:8081", "127.0.0.1:8082"];

    #[test]
    fn a_first_start_founds_and_a_later_one_takes_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let founding = members("node1", "127.0.0.1:8080", &PEERS);
        let loaded = load(dir.path(), &flags(&founding, true)).unwrap();
        assert_eq!(loaded.origin, Origin::Founded);
        record::write(dir.path(), &loaded.record).unwrap();
        let again = load(dir.path(), &flags(&founding, true)).unwrap();
        assert_eq!(again.origin, Origin::Recorded);
        assert_eq!(again.record, loaded.record);
        let alone = members("node1", "127.0.0.1:8080", &[]);
        let without_peers = load(dir.path(), &flags(&alone, false)).unwrap();
        assert_eq!(without_peers.record.members.founding_voters().len(), 3);
    }

    #[test]
    fn flags_of_another_cluster_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let founding = members("node1", "127.0.0.1:8080", &PEERS);
        let loaded = load(dir.path(), &flags(&founding, true)).unwrap();
        record::write(dir.path(), &loaded.record).unwrap();
        let other = members("node1", "127.0.0.1:8080", &["127.0.0.1:9001"]);
        let error = load(dir.path(), &flags(&other, true)).unwrap_err();
        assert!(
            error.contains("founded with 1=127.0.0.1:8080,2=127.0.0.1:8081,3=127.0.0.1:8082")
                && error.contains("describe 1=127.0.0.1:8080,2=127.0.0.1:9001"),
            "{error}"
        );
        let moved = members("node1", "127.0.0.1:8090", &PEERS);
        let error = load(dir.path(), &flags(&moved, true)).unwrap_err();
        assert!(error.contains("but -a says 127.0.0.1:8090"), "{error}");
        let mut renamed = flags(&founding, true);
        renamed.cluster = "other";
        let error = load(dir.path(), &renamed).unwrap_err();
        assert!(
            error.contains("\"replog\"") && error.contains("\"other\""),
            "{error}"
        );
        let id = ClusterId::parse("elsewhere").unwrap();
        let mut with_id = flags(&founding, true);
        with_id.cluster_id = Some(&id);
        let error = load(dir.path(), &with_id).unwrap_err();
        assert!(error.contains("--cluster-id says elsewhere"), "{error}");
    }

    #[test]
    fn a_directory_from_before_names_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metadata.json"), "{}").unwrap();
        let founding = members("2", "127.0.0.1:8081", &["127.0.0.1:8080"]);
        let loaded = load(dir.path(), &flags(&founding, true)).unwrap();
        assert_eq!(loaded.origin, Origin::Upgraded);
    }
}
