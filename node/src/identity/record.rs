//! `cluster.json`: the node's durable identity, beside `metadata.json` in its directory.
//!
//! ```text
//! {"version":1,"cluster":"replog","cluster_id":"5f0c1a9e2b7d4c83","id":1,
//!  "members":[{"id":1,"name":"node1","addr":"127.0.0.1:8080"},
//!             {"id":2,"name":"node2","addr":"127.0.0.1:8081"},
//!             {"id":3,"name":null,"addr":"127.0.0.1:8082"}]}
//! ```
//!
//! (one line on disk). `id` is this node's numeric id; `members` are the members with the
//! names known so far (`null`: not learned from a hello yet): the founding members, then
//! those that configuration entries added (each with `"since":N`, the index of the entry
//! it was learned from; see `membership::learn`). Once the members are no longer exactly
//! the founders, `"founders":[{"id":1,"addr":"..."},...]` keeps the founding voters, which
//! `-p` is checked against and the core starts from; a file without it (every file from
//! before membership changes) has its members as founders. Written at the first
//! start and whenever a peer's name or a member is learned, replaced like `metadata.json` (a temporary
//! file, fsync, rename, directory fsync), so a crash leaves the old file or the new one.
//! Read back through [`read`], the one gateway: a file that does not parse, or whose
//! members break the [`Members`] invariant, is an error naming the file.

use super::name::{ClusterId, NodeName};
use crate::config::{check_addr, ConfigError, Members};
use crate::storage::{replace_durably, StorageError};
use replog_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;

pub const FILE_NAME: &str = "cluster.json";
const TEMP_FILE_NAME: &str = "cluster.json.tmp";
const FORMAT_VERSION: u32 = 1;

/// Who this node is and which cluster it belongs to, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The cluster's name (`--cluster`).
    pub cluster: String,
    pub cluster_id: ClusterId,
    pub members: Members,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    version: u32,
    cluster: String,
    cluster_id: ClusterId,
    id: u64,
    members: Vec<MemberFile>,
    /// The founding voters, when they are not exactly `members` (the cluster changed
    /// since it was founded); absent in every file written before membership changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    founders: Option<Vec<FounderFile>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    id: u64,
    name: Option<NodeName>,
    addr: String,
    /// The index of the configuration entry the member was learned from; absent: 0 (a
    /// founder).
    #[serde(default, skip_serializing_if = "is_zero")]
    since: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FounderFile {
    id: u64,
    addr: String,
}

fn is_zero(number: &u64) -> bool {
    *number == 0
}

/// Reads `cluster.json` in `dir`; `None` when there is none (a first start, or a data
/// directory from before names).
pub fn read(dir: &Path) -> Result<Option<Record>, String> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let garbled = |problem: String| format!("garbled {}: {problem}", path.display());
    let file: RecordFile =
        serde_json::from_slice(&bytes).map_err(|error| garbled(error.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(garbled(format!(
            "format version {} (this replog reads {FORMAT_VERSION})",
            file.version
        )));
    }
    let members = members_of(&file).map_err(|error| garbled(error.0))?;
    Ok(Some(Record {
        cluster: file.cluster,
        cluster_id: file.cluster_id,
        members,
    }))
}

fn members_of(file: &RecordFile) -> Result<Members, ConfigError> {
    let mut addrs = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut since = BTreeMap::new();
    for member in &file.members {
        if member.since != 0 {
            since.insert(NodeId(member.id), member.since);
        }
        check_addr(&member.addr)?;
        if addrs
            .insert(NodeId(member.id), member.addr.clone())
            .is_some()
        {
            return Err(ConfigError(format!(
                "node id {} is listed twice",
                member.id
            )));
        }
        if let Some(name) = &member.name {
            names.insert(NodeId(member.id), name.clone());
        }
    }
    let founders = match &file.founders {
        None => addrs.clone(),
        Some(founders) => {
            let mut map = BTreeMap::new();
            for founder in founders {
                check_addr(&founder.addr)?;
                if map
                    .insert(NodeId(founder.id), founder.addr.clone())
                    .is_some()
                {
                    return Err(ConfigError(format!(
                        "founder id {} is listed twice",
                        founder.id
                    )));
                }
            }
            map
        }
    };
    let members = Members {
        own_id: NodeId(file.id),
        addrs,
        names,
        founders,
        since,
    };
    members.check_names()?;
    Ok(members)
}

/// Atomically replaces `cluster.json` in `dir` with `record` and makes it durable.
pub fn write(dir: &Path, record: &Record) -> Result<(), StorageError> {
    let members = &record.members;
    let file = RecordFile {
        version: FORMAT_VERSION,
        cluster: record.cluster.clone(),
        cluster_id: record.cluster_id.clone(),
        id: members.own_id.0,
        members: members
            .addrs
            .iter()
            .map(|(&id, addr)| MemberFile {
                id: id.0,
                name: members.name_of(id).cloned(),
                addr: addr.clone(),
                since: members.since(id),
            })
            .collect(),
        founders: (members.founders != members.addrs).then(|| {
            (members.founders.iter())
                .map(|(&id, addr)| FounderFile {
                    id: id.0,
                    addr: addr.clone(),
                })
                .collect()
        }),
    };
    let mut bytes = serde_json::to_vec(&file).expect("a record always serializes");
    bytes.push(b'\n');
    replace_durably(&dir.join(FILE_NAME), &dir.join(TEMP_FILE_NAME), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let name = NodeName::parse("node1").unwrap();
        let peers = vec!["127.0.0.1:8081".to_string()];
        let members = Members::resolve(&name, "127.0.0.1:8080", &peers).unwrap();
        Record {
            cluster: "replog".into(),
            cluster_id: ClusterId::derive("replog", &members.fingerprint()),
            members,
        }
    }

    #[test]
    fn a_record_round_trips_in_the_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let record = record();
        write(dir.path(), &record).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(record.clone()));
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"version\":1,\"cluster\":\"replog\",\"cluster_id\":\"{}\",\"id\":1,\
                 \"members\":[{{\"id\":1,\"name\":\"node1\",\"addr\":\"127.0.0.1:8080\"}},\
                 {{\"id\":2,\"name\":null,\"addr\":\"127.0.0.1:8081\"}}]}}\n",
                record.cluster_id
            )
        );
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
    }

    #[test]
    fn a_changed_membership_keeps_its_founders_and_the_index_members_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = record();
        record.members.addrs.remove(&NodeId(2));
        record
            .members
            .addrs
            .insert(NodeId(3), "127.0.0.1:8082".into());
        (record.members.names).insert(NodeId(3), NodeName::parse("node3").unwrap());
        record.members.since.insert(NodeId(3), 17);
        write(dir.path(), &record).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            text.contains("{\"id\":3,\"name\":\"node3\",\"addr\":\"127.0.0.1:8082\",\"since\":17}")
                && text.contains(
                    "\"founders\":[{\"id\":1,\"addr\":\"127.0.0.1:8080\"},\
                     {\"id\":2,\"addr\":\"127.0.0.1:8081\"}]"
                ),
            "{text}"
        );
        let back = read(dir.path()).unwrap().unwrap();
        assert_eq!(back, record);
        assert_eq!(back.members.founding_voters(), vec![NodeId(1), NodeId(2)]);
    }

    #[test]
    fn a_garbled_record_is_an_error_naming_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"version\":1,\"cluster\":\"replog\",\"cluster_id\":\"c\",\"id\":1,\
                    \"members\":[{\"id\":1,\"name\":\"a\",\"addr\":\"127.0.0.1:1\"}]}";
        std::fs::write(dir.path().join(FILE_NAME), good).unwrap();
        assert!(read(dir.path()).unwrap().is_some());
        for (garbage, why) in [
            ("{\"version\":1", "EOF"),
            (
                &good.replace("\"id\":1,\"m", "\"id\":2,\"m") as &str,
                "own id 2",
            ),
            (&good.replace("\"a\"", "\"a b\"") as &str, "node name"),
            (
                &good.replace("\"version\":1", "\"version\":9") as &str,
                "format version 9",
            ),
            (
                &good.replace("\"name\":\"a\"", "\"name\":\"7\"") as &str,
                "number of node 7",
            ),
            (
                &good.replace("127.0.0.1:1", "nowhere") as &str,
                "not an address",
            ),
        ] {
            std::fs::write(dir.path().join(FILE_NAME), garbage).unwrap();
            let error = read(dir.path()).unwrap_err();
            assert!(
                error.contains("cluster.json") && error.contains(why),
                "{error}"
            );
        }
    }
}
