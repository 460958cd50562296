//! `replog start -i NAME -a ADDR --join ADDR`: an empty node asks a running cluster to add
//! it, records the identity the cluster gives it, catches up as a learner, and asks to be
//! promoted once it has.
//!
//! Before the node opens anything ([`prepare`]):
//! 1. It finds the leader through the `--join` addresses (`status`, following the leader
//!    each node names) and reads the cluster's identity and configuration there.
//! 2. If the configuration has no member of its name, it asks the leader to add it as a
//!    learner (`member add NAME ADDR`, committed before the answer) and reads again.
//! 3. It records what the leader showed in `cluster.json`: the cluster's name and id, the
//!    founders, the members, and its own id. From here on it is an ordinary member: a
//!    restart takes the record, and `--join` only checks that the cluster asked is the
//!    one recorded.
//!
//! Then the node starts as a learner: the leader sends it the log (from storage, or an
//! install of its boundary when the log was trimmed). Unless `--learner`, a thread
//! ([`promote_when_caught_up`]) asks the leader every half second to promote it, and the
//! core's rule decides when: a learner is promoted only once its log reaches the leader's
//! commit index (`MembershipRefusal::LearnerBehind` until then).
//!
//! Refused, naming the problem: a name the configuration holds at another address, an
//! address another member holds, a cluster of another name or id than `--cluster` and
//! `--cluster-id` say, a data directory recorded for another cluster, one holding data but
//! no `cluster.json`, and `-p` (a joining node learns its peers from the cluster).

use crate::client::blocking::{self, AppendError, ClientOptions};
use crate::client::token::read_token_file;
use crate::client::NodeState;
use crate::config::{Members, NodeConfig};
use crate::identity::{record, ClusterId, NodeName, Record};
use crate::membership::MemberRequest;
use replog_core::NodeId;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// `--join` and `--learner`.
#[derive(Clone, Debug)]
pub struct Join {
    /// Nodes of the cluster to ask; the leader is found from any of them.
    pub targets: Vec<String>,
    /// Stay a learner: do not ask to be promoted.
    pub learner: bool,
}

/// How long a first start waits for the cluster to add this node.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restart with `--join` waits to check the cluster's identity.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a learner asks to be promoted.
const PROMOTE_INTERVAL: Duration = Duration::from_millis(500);

/// Records this node's identity from the cluster if its directory holds none yet (see the
/// module docs); returns lines for the log, which is not set up yet.
pub fn prepare(config: &NodeConfig, join: &Join, node_dir: &Path) -> Result<Vec<String>, String> {
    if config.members.founders.len() > 1 {
        return Err(
            "--join and -p: a joining node learns its peers from the cluster; leave out -p".into(),
        );
    }
    let options = client_options(config)?;
    if let Some(recorded) = record::read(node_dir)? {
        return check_recorded(&recorded, join, &options).map(|note| vec![note]);
    }
    if node_dir.join("metadata.json").exists() {
        return Err(format!(
            "{} holds a node's data but no cluster.json: it cannot join a cluster; give \
             another --data-dir or -i",
            node_dir.display()
        ));
    }
    let name = config.members.own_name().clone();
    let addr = config.members.own_addr().to_string();
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let mut notes = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (leader, state) =
            blocking::leader_state(&join.targets, left, &options).map_err(|problem| {
                format!("cannot join through {}: {problem}", join.targets.join(","))
            })?;
        let record = identity_from(&state, &name, &addr, config)
            .map_err(|problem| format!("cannot join the cluster at {leader}: {problem}"))?;
        if let Some(record) = record {
            std::fs::create_dir_all(node_dir)
                .map_err(|error| format!("cannot create {}: {error}", node_dir.display()))?;
            record::write(node_dir, &record).map_err(|error| error.to_string())?;
            notes.push(format!(
                "joined cluster {:?} (id {}) as node {name} (id {}) through the leader at \
                 {leader}; recorded in {}",
                record.cluster,
                record.cluster_id,
                record.members.own_id.0,
                node_dir.join(record::FILE_NAME).display()
            ));
            return Ok(notes);
        }
        let request = MemberRequest::Add {
            name: name.clone(),
            addr: addr.clone(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match blocking::member_with(std::slice::from_ref(&leader), request, left, &options) {
            Ok(added) => notes.push(format!(
                "the leader at {leader} added {name} at {addr} as a learner (index {})",
                added.index
            )),
            Err(AppendError::Rejected { message }) => {
                return Err(format!(
                    "the leader at {leader} refused to add {name}: {message}"
                ))
            }
            Err(problem) if Instant::now() < deadline => {
                notes.push(format!("asking to be added again: {problem}"));
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(problem) => return Err(format!("cannot join: {problem}")),
        }
    }
}

/// A restart with `--join`: the recorded identity stands; the cluster asked must be it.
fn check_recorded(
    recorded: &Record,
    join: &Join,
    options: &ClientOptions,
) -> Result<String, String> {
    Ok(
        match blocking::leader_state(&join.targets, CHECK_TIMEOUT, options) {
            Ok((leader, state)) => match &state.cluster {
                Some(cluster) if cluster.id != recorded.cluster_id.as_str() => {
                    return Err(format!(
                        "cannot join the cluster at {leader}, {:?} (id {}): this data directory \
                     belongs to cluster {:?} (id {}); give another --data-dir or -i",
                        cluster.name, cluster.id, recorded.cluster, recorded.cluster_id
                    ))
                }
                _ => format!(
                    "already a member of cluster {:?} (id {}): --join only checked it",
                    recorded.cluster, recorded.cluster_id
                ),
            },
            Err(problem) => format!(
                "already a member of cluster {:?} (id {}); could not check it against --join \
             ({problem})",
                recorded.cluster, recorded.cluster_id
            ),
        },
    )
}

/// The record for `name` at `addr` from the leader's `state`: `None` while the
/// configuration does not hold it yet.
fn identity_from(
    state: &NodeState,
    name: &NodeName,
    addr: &str,
    config: &NodeConfig,
) -> Result<Option<Record>, String> {
    let Some(cluster) = &state.cluster else {
        return Err("the node is older than membership changes".into());
    };
    if cluster.name != config.cluster {
        return Err(format!(
            "it is named {:?}, but --cluster says {:?}",
            cluster.name, config.cluster
        ));
    }
    let cluster_id = ClusterId::parse(&cluster.id).map_err(|error| error.0)?;
    if let Some(given) = config
        .cluster_id
        .as_ref()
        .filter(|given| **given != cluster_id)
    {
        return Err(format!(
            "its id is {cluster_id}, but --cluster-id says {given}"
        ));
    }
    let members = state.members.as_deref().unwrap_or_default();
    let holder = |found: &crate::client::MemberView| {
        format!("{} (id {})", found.name.as_deref().unwrap_or("?"), found.id)
    };
    if let Some(other) = members
        .iter()
        .find(|member| member.addr == addr && member.name.as_deref() != Some(name.as_str()))
    {
        return Err(format!("{addr} is the address of member {}", holder(other)));
    }
    let Some(me) = members
        .iter()
        .find(|member| member.name.as_deref() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    if me.addr != addr {
        return Err(format!(
            "{name} is a member already, at {} (a node's address is fixed when it is added)",
            me.addr
        ));
    }
    let index = state
        .configuration
        .as_ref()
        .map_or(0, |config| config.index);
    let founders: BTreeMap<NodeId, String> = (cluster.founders.iter())
        .map(|founder| (NodeId(founder.id), founder.addr.clone()))
        .collect();
    let mut book = Members {
        own_id: NodeId(me.id),
        addrs: BTreeMap::new(),
        names: BTreeMap::new(),
        founders,
        since: BTreeMap::new(),
    };
    for member in members {
        let id = NodeId(member.id);
        book.addrs.insert(id, member.addr.clone());
        if let Some(name) = member.name.as_deref().and_then(|n| NodeName::parse(n).ok()) {
            book.names.insert(id, name);
        }
        if !book.founders.contains_key(&id) {
            book.since.insert(id, index);
        }
    }
    book.check_names().map_err(|error| error.0)?;
    Ok(Some(Record {
        cluster: cluster.name.clone(),
        cluster_id,
        members: book,
    }))
}

/// How this node connects to its cluster as a client: with its token and TLS, if any.
pub fn client_options(config: &NodeConfig) -> Result<ClientOptions, String> {
    let token = match &config.client_token {
        Some(token) => Some(read_token_file("--client-token-file", token.path())?),
        None => None,
    };
    Ok(ClientOptions {
        token,
        tls: config.tls.as_ref().map(|tls| tls.peer.clone()),
    })
}

/// Asks, every half second, that node `me` be promoted, until the leader's configuration
/// holds it as a voter (see the module docs). Runs on its own thread for as long as the
/// node does.
pub fn promote_when_caught_up(
    me: NodeId,
    name: NodeName,
    targets: Vec<String>,
    options: ClientOptions,
) {
    let spawned = std::thread::Builder::new()
        .name("promote".into())
        .spawn(move || {
            let mut last_note = String::new();
            while let Some(note) = promote_once(me, &name, &targets, &options) {
                if note != last_note {
                    info!("{note}");
                    last_note = note;
                }
                std::thread::sleep(PROMOTE_INTERVAL);
            }
        });
    if let Err(error) = spawned {
        warn!("cannot ask to be promoted: no thread: {error}");
    }
}

/// One round of asking: `None` once there is nothing more to ask (promoted, or no longer
/// a learner), else what to log about why not yet.
fn promote_once(
    me: NodeId,
    name: &NodeName,
    targets: &[String],
    options: &ClientOptions,
) -> Option<String> {
    let (leader, state) = match blocking::leader_state(targets, PROMOTE_INTERVAL * 4, options) {
        Ok(found) => found,
        Err(problem) => return Some(format!("asking to be promoted: {problem}")),
    };
    let Some(config) = state.configuration else {
        info!("the leader at {leader} shows no configuration: not asking to be promoted");
        return None;
    };
    if config.voters.contains(&me.0) {
        info!(
            "{name} is a voter (configuration at index {})",
            config.index
        );
        return None;
    }
    if !config.learners.contains(&me.0) {
        info!("{name} is not a learner in the leader's configuration: not asking to be promoted");
        return None;
    }
    let request = MemberRequest::Promote {
        name: name.to_string(),
    };
    let leader = std::slice::from_ref(&leader);
    match blocking::member_with(leader, request, PROMOTE_INTERVAL * 4, options) {
        Ok(done) => {
            info!(
                "promoted to voter by the leader at {} (index {})",
                leader[0], done.index
            );
            None
        }
        Err(AppendError::Rejected { message }) => Some(format!("not promoted yet: {message}")),
        Err(problem) => Some(format!("asking to be promoted: {problem}")),
    }
}
