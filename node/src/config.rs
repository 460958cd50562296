//! A node's static configuration: who is in the cluster, where they listen, and the timing
//! and size limits the runtime uses.
//!
//! ## Node names, ids and addresses
//!
//! A node is called by a name (`-i node1`, `[A-Za-z0-9_.-]{1,64}`), but Raft needs a
//! numeric id for every voter (votes are stored by id), identical on every node and never
//! changed. [`Members::resolve`] derives the founding members' ids from the command line:
//! - **Numbered:** this node's name and every peer's are numbers (`-i 1 -p
//!   "2=10.0.0.2:7000,3=10.0.0.3:7000"`): the numbers are the ids, as before names existed.
//! - **Derived:** otherwise (plain addresses `-p "ADDR,ADDR"`, or `NAME=ADDR` peers with a
//!   name that is not a number), the ids are `1..=N` in the sorted order of every address
//!   in the cluster (this node's `-a` and the peers), so every node derives the same
//!   mapping from the same address list. A numeric name must then equal its position; a
//!   mismatch is refused with the mapping spelled out, never silently renumbered.
//!
//! A peer named only by its address gets its name from its hello (`transport::wire`). The
//! mapping is fixed at a node's first start: `identity` records it in the data directory
//! (`cluster.json`) with the cluster's id, and later starts take it from there.

use crate::identity::NodeName;
use crate::scheduling::Scheduling;
use replog_core::NodeId;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The node's address book: every member's id and address (its single port serves peers
/// and clients alike), the names known so far, and the founding voters.
///
/// The founders are the cluster's first configuration (the core's bootstrap voters, what
/// a cluster id is derived from), fixed forever. The book starts as them and then follows
/// the configurations the log carries (`membership::learn`): a member added later is in
/// it with the index of the configuration it was learned from (`since`), so that an older
/// configuration replayed during a catch-up never overrides what a newer one said.
///
/// Invariant: holds at least this node, and this node's name; addresses are distinct; no
/// id is 0; names are distinct and each belongs to a member; a numeric name is its id;
/// there is at least one founder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    pub own_id: NodeId,
    pub addrs: BTreeMap<NodeId, String>,
    pub names: BTreeMap<NodeId, NodeName>,
    /// The founding voters and the addresses they were founded with.
    pub founders: BTreeMap<NodeId, String>,
    /// The index of the configuration each later member was learned from; a founder, or a
    /// member missing here, counts as 0.
    pub since: BTreeMap<NodeId, u64>,
}

/// One `-p` entry: an address, named or not.
struct PeerEntry {
    text: String,
    name: Option<NodeName>,
    addr: String,
}

impl Members {
    /// Builds the founding membership from `-i`, `-a` and the `-p` entries (see the module
    /// docs). This node's own address may appear among the peers, so one list serves every
    /// node.
    pub fn resolve(
        own_name: &NodeName,
        own_addr: &str,
        peers: &[String],
    ) -> Result<Members, ConfigError> {
        check_addr(own_addr).map_err(|error| ConfigError(format!("-a: {error}")))?;
        let entries = parse_peers(peers)?;
        let named = entries.iter().filter(|entry| entry.name.is_some()).count();
        if named != 0 && named != entries.len() {
            return Err(ConfigError(
                "peers must be all plain addresses or all NAME=ADDR, not a mix".into(),
            ));
        }
        let numbered = named == entries.len()
            && own_name.number().is_some()
            && entries
                .iter()
                .all(|entry| entry.name.as_ref().and_then(NodeName::number).is_some());
        let (own_id, addrs, names) = if named > 0 && numbered {
            numbered_ids(own_name, own_addr, &entries)?
        } else {
            derived_ids(own_name, own_addr, &entries)?
        };
        let mut seen: Vec<&String> = addrs.values().collect();
        seen.sort();
        if seen.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ConfigError(format!(
                "two nodes share an address in {}",
                describe(&addrs)
            )));
        }
        let members = Members {
            own_id,
            founders: addrs.clone(),
            addrs,
            names,
            since: BTreeMap::new(),
        };
        members.check_names()?;
        Ok(members)
    }

    pub fn own_addr(&self) -> &str {
        &self.addrs[&self.own_id]
    }

    pub fn own_name(&self) -> &NodeName {
        &self.names[&self.own_id]
    }

    /// The founding voters: the core's bootstrap configuration.
    pub fn founding_voters(&self) -> Vec<NodeId> {
        self.founders.keys().copied().collect()
    }

    /// The index of the configuration `id`'s entry was learned from (0: a founder's).
    pub fn since(&self, id: NodeId) -> u64 {
        self.since.get(&id).copied().unwrap_or(0)
    }

    pub fn peers(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.addrs
            .iter()
            .filter(|(&id, _)| id != self.own_id)
            .map(|(&id, addr)| (id, addr.as_str()))
    }

    pub fn addr_of(&self, id: NodeId) -> Option<&str> {
        self.addrs.get(&id).map(String::as_str)
    }

    pub fn name_of(&self, id: NodeId) -> Option<&NodeName> {
        self.names.get(&id)
    }

    /// The member called `name`, if any.
    pub fn id_named(&self, name: &NodeName) -> Option<NodeId> {
        self.names
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(&id, _)| id)
    }

    /// The founders' ids and addresses in one line, `1=ADDR,2=ADDR` (what a derived
    /// cluster id is made of, what `-p` is checked against, and what error messages show).
    pub fn fingerprint(&self) -> String {
        describe(&self.founders)
    }

    /// Every member in one line, `1=node1@ADDR,2=?@ADDR` (`?`: name not learned yet).
    pub fn describe_named(&self) -> String {
        let parts: Vec<String> = self
            .addrs
            .iter()
            .map(|(id, addr)| {
                let name = self.names.get(id).map_or("?", NodeName::as_str);
                format!("{}={name}@{addr}", id.0)
            })
            .collect();
        parts.join(",")
    }

    /// Checks the invariant on names (a value read from a file, or built from flags).
    pub fn check_names(&self) -> Result<(), ConfigError> {
        if !self.addrs.contains_key(&self.own_id) || !self.names.contains_key(&self.own_id) {
            return Err(ConfigError(format!(
                "this node's own id {} has no address or name in {}",
                self.own_id.0,
                self.describe_named()
            )));
        }
        if self.addrs.contains_key(&NodeId(0)) || self.founders.contains_key(&NodeId(0)) {
            return Err(ConfigError("node id 0 is reserved; ids start at 1".into()));
        }
        if self.founders.is_empty() {
            return Err(ConfigError(
                "a cluster needs at least one founding voter".into(),
            ));
        }
        let mut addrs: Vec<&String> = self.addrs.values().collect();
        addrs.sort();
        if addrs.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ConfigError(format!(
                "two members share an address in {}",
                self.describe_named()
            )));
        }
        let mut seen = BTreeMap::new();
        for (id, name) in &self.names {
            if !self.addrs.contains_key(id) {
                return Err(ConfigError(format!("name {name} is given to no member")));
            }
            if let Some(number) = name.number().filter(|number| number != id) {
                return Err(ConfigError(format!(
                    "node {} is named {name}, which is the number of node {}",
                    id.0, number.0
                )));
            }
            if let Some(other) = seen.insert(name, id) {
                return Err(ConfigError(format!(
                    "two nodes are named {name}: {} and {}",
                    other.0, id.0
                )));
            }
        }
        Ok(())
    }
}

fn describe(addrs: &BTreeMap<NodeId, String>) -> String {
    let parts: Vec<String> = addrs
        .iter()
        .map(|(id, addr)| format!("{}={addr}", id.0))
        .collect();
    parts.join(",")
}

fn parse_peers(peers: &[String]) -> Result<Vec<PeerEntry>, ConfigError> {
    let mut entries = Vec::new();
    for peer in peers.iter().map(|peer| peer.trim()) {
        if peer.is_empty() {
            continue;
        }
        let (name, addr) = match peer.split_once('=') {
            Some((name, addr)) => {
                let name = NodeName::parse(name.trim())
                    .map_err(|error| ConfigError(format!("peer {peer:?}: {error}")))?;
                (Some(name), addr.trim())
            }
            None => (None, peer),
        };
        check_addr(addr).map_err(|error| ConfigError(format!("peer {peer:?}: {error}")))?;
        entries.push(PeerEntry {
            text: peer.to_string(),
            name,
            addr: addr.to_string(),
        });
    }
    Ok(entries)
}

type Resolved = (NodeId, BTreeMap<NodeId, String>, BTreeMap<NodeId, NodeName>);

/// Every name is a number: the numbers are the ids.
fn numbered_ids(
    own_name: &NodeName,
    own_addr: &str,
    peers: &[PeerEntry],
) -> Result<Resolved, ConfigError> {
    let own_id = own_name.number().expect("checked numbered");
    let mut addrs = BTreeMap::from([(own_id, own_addr.to_string())]);
    for peer in peers {
        let name = peer.name.as_ref().expect("checked named");
        let id = name.number().expect("checked numbered");
        match addrs.get(&id) {
            Some(known) if *known == peer.addr => {} // This node itself, or a repeat.
            Some(known) => {
                return Err(ConfigError(format!(
                    "node id {} is given two addresses: {known} and {}",
                    id.0, peer.addr
                )))
            }
            None => {
                addrs.insert(id, peer.addr.clone());
            }
        }
    }
    let names = addrs
        .keys()
        .map(|&id| (id, NodeName::of_number(id)))
        .collect();
    Ok((own_id, addrs, names))
}

/// Ids follow the sorted address list; names, where given, are attached to them.
fn derived_ids(
    own_name: &NodeName,
    own_addr: &str,
    peers: &[PeerEntry],
) -> Result<Resolved, ConfigError> {
    let mut all: Vec<(&str, Option<&NodeName>, &str)> = peers
        .iter()
        .map(|peer| (peer.addr.as_str(), peer.name.as_ref(), peer.text.as_str()))
        .collect();
    all.push((own_addr, Some(own_name), "-i and -a"));
    all.sort_by(|a, b| address_order(a.0, b.0));
    let mut addrs = BTreeMap::new();
    let mut names: BTreeMap<NodeId, NodeName> = BTreeMap::new();
    for (addr, name, text) in all {
        let next = NodeId(addrs.len() as u64 + 1);
        let id = match addrs.iter().find(|(_, known)| *known == addr) {
            Some((&id, _)) => id,
            None => {
                addrs.insert(next, addr.to_string());
                next
            }
        };
        let Some(name) = name else { continue };
        match names.get(&id) {
            Some(known) if known != name => {
                return Err(ConfigError(format!(
                    "{addr} is named both {known} and {name} ({text})"
                )))
            }
            _ => {
                names.insert(id, name.clone());
            }
        }
    }
    let own_id = *addrs
        .iter()
        .find(|(_, addr)| *addr == own_addr)
        .expect("own address inserted")
        .0;
    for (id, name) in &names {
        if let Some(number) = name.number().filter(|number| number != id) {
            let whose = if *id == own_id {
                format!("{own_addr} is not node {}", number.0)
            } else {
                format!("{} is not node {}", addrs[id], number.0)
            };
            return Err(ConfigError(format!(
                "node ids follow the sorted address list ({}), so {whose}; pass the                  matching number, name nodes with names that are not numbers, or number                  every peer as ID=ADDR",
                describe(&addrs)
            )));
        }
    }
    Ok((own_id, addrs, names))
}

/// Checks that `addr` has the form `HOST:PORT` (a host name, an IPv4 address or a bracketed
/// IPv6 address, and a port from 1), without resolving the name: a peer's name may not
/// resolve yet when this node starts. Used wherever an address enters from outside, so
/// that a typo is reported before anything is created or dialled.
pub fn check_addr(addr: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(ConfigError(format!(
            "{addr:?} is not an address ({why}); expected HOST:PORT, e.g. 127.0.0.1:7001"
        )))
    };
    if let Ok(socket_addr) = addr.parse::<SocketAddr>() {
        return match socket_addr.port() {
            0 => bad("port 0"),
            _ => Ok(()),
        };
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("no port");
    };
    match port.parse::<u16>() {
        Ok(0) => return bad("port 0"),
        Ok(_) => {}
        Err(_) if port.is_empty() => return bad("no port"),
        Err(_) => return bad("the port is not a number from 1 to 65535"),
    }
    let host_name = host.split('.').all(|label| {
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !host_name {
        return bad("not a host name or IP address before the port");
    }
    Ok(())
}

/// Socket addresses sort by IP then port (so `:9000` comes before `:10000`); anything that
/// is not a literal socket address (a host name) sorts after them, by text.
fn address_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Everything a node runs with.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Who is in the cluster; this node's own entry is the address it advertises: what
    /// peers dial and what clients are told when it leads.
    pub members: Members,
    /// The socket address to bind, which may differ from the advertised one (e.g.
    /// `0.0.0.0:7001` behind an advertised `10.0.0.5:7001`).
    pub listen: String,
    /// Named in the peer handshake; nodes of different clusters refuse each other.
    pub cluster: String,
    /// `--cluster-id`: the cluster's id, recorded at the first start; `None` derives it
    /// from the cluster's name and founding members (`identity::ClusterId::derive`).
    pub cluster_id: Option<crate::identity::ClusterId>,
    /// Peers prove knowledge of these (`--cluster-secret-file`); none: no authentication.
    pub secrets: crate::transport::ClusterSecrets,
    /// Clients must show this token (`--client-token-file`); `None`: they need none.
    pub client_token: Option<crate::client::token::ClientToken>,
    /// The port speaks TLS, and peers dial each other with mutual TLS, with this
    /// (`--tls-cert`, `--tls-key`, `--tls-ca`).
    pub tls: Option<crate::tls::NodeTls>,
    pub data_dir: PathBuf,
    /// Campaign at once instead of waiting out a first election timeout.
    pub campaign_at_start: bool,
    /// Stop cleanly when standard input reaches end of file (used by `replog demo` and the
    /// tests, so that nodes never outlive the process that started them).
    pub stop_on_stdin_eof: bool,
    /// The kernel scheduling policy of the core and storage threads (see `scheduling.rs`).
    pub scheduling: Scheduling,
    pub timing: Timing,
    pub limits: Limits,
    /// `--metrics-addr`: serve `/metrics` and `/health` over HTTP on this address.
    pub metrics_addr: Option<String>,
    /// `--join`: a first start asks this cluster to add the node (`joining`).
    pub join: Option<crate::joining::Join>,
    /// What the node logs (`REPLOG_LOG`) and in which format (`--log-format`).
    pub log: crate::logging::LogSettings,
}

/// How logical ticks map to wall time, and the core's timeouts in ticks.
#[derive(Clone, Debug)]
pub struct Timing {
    pub tick: Duration,
    pub election_timeout_ticks_min: u64,
    pub election_timeout_ticks_max: u64,
    pub heartbeat_interval_ticks: u64,
    /// An append not committed within this long is answered `timeout` (outcome unknown).
    pub append_timeout: Duration,
    /// `--read-lease`: the leader serves `lease` reads without a confirmation round while
    /// its lease holds (`replog_core::Config::read_lease`); with the default timing a lease
    /// lasts 120 ms after each confirmed round.
    pub read_lease: bool,
}

impl Default for Timing {
    /// 10 ms ticks; elections after 200–400 ms of silence, heartbeats every 40 ms. A killed
    /// leader is replaced in well under a second, and a loaded machine that delays a few
    /// heartbeats does not trigger needless elections.
    fn default() -> Timing {
        Timing {
            tick: Duration::from_millis(10),
            election_timeout_ticks_min: 20,
            election_timeout_ticks_max: 40,
            heartbeat_interval_ticks: 4,
            append_timeout: Duration::from_secs(5),
            read_lease: false,
        }
    }
}

/// The longest client request line, newline excluded. A request line is the command
/// JSON-escaped plus 27 bytes, and escaping at most doubles printable text, so a command of
/// 2 MiB fits with room to spare; the front end buffers at most this much of a partial
/// line per connection, and an entry this big still fits a peer frame many times over.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Size limits on what crosses a socket.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The longest client request line, newline excluded.
    pub max_line_bytes: usize,
    /// The largest peer frame accepted; a bigger length prefix closes the connection.
    pub max_frame_bytes: usize,
    /// Batches of messages queued for one peer before new ones are dropped.
    pub peer_queue_batches: usize,
    /// A log segment is sealed when the next batch would take it past this size.
    pub segment_bytes: u64,
    /// Committed entries the core keeps in memory beyond what it must
    /// (`replog_core::Config::log_cache_bytes`); older ones are read back from the segments.
    pub log_cache_bytes: usize,
    /// Automatic retention: the leader trims the log to about this many newest entries.
    pub retain_entries: Option<u64>,
    /// Automatic retention: the leader trims the log to about this many bytes of segments.
    pub retain_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: MAX_LINE_BYTES,
            max_frame_bytes: 64 << 20,
            peer_queue_batches: 1024,
            segment_bytes: crate::storage::DEFAULT_SEGMENT_BYTES,
            log_cache_bytes: replog_core::Config::new(replog_core::NodeId(1), Vec::new())
                .log_cache_bytes,
            retain_entries: None,
            retain_bytes: None,
        }
    }
}

/// A configuration the node cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn name(text: &str) -> NodeName {
        NodeName::parse(text).unwrap()
    }

    #[test]
    fn derived_ids_follow_sorted_addresses_numerically() {
        let peers = strings(&["127.0.0.1:10000", "127.0.0.1:9000"]);
        let members = Members::resolve(&name("2"), "127.0.0.1:9500", &peers).unwrap();
        assert_eq!(
            members.fingerprint(),
            "1=127.0.0.1:9000,2=127.0.0.1:9500,3=127.0.0.1:10000"
        );
        assert_eq!(members.own_addr(), "127.0.0.1:9500");
    }

    #[test]
    fn derived_ids_refuse_a_mismatched_own_id() {
        let peers = strings(&["127.0.0.1:7002"]);
        let error = Members::resolve(&name("2"), "127.0.0.1:7001", &peers).unwrap_err();
        assert!(error.0.contains("1=127.0.0.1:7001"), "{error}");
    }

    #[test]
    fn own_address_in_the_peer_list_is_ignored() {
        let peers = strings(&["127.0.0.1:7001", "127.0.0.1:7002"]);
        let members = Members::resolve(&name("1"), "127.0.0.1:7001", &peers).unwrap();
        assert_eq!(members.founding_voters(), vec![NodeId(1), NodeId(2)]);
    }

    #[test]
    fn explicit_ids_are_taken_as_given() {
        let peers = strings(&["7=127.0.0.1:7002", "3=127.0.0.1:7003"]);
        let members = Members::resolve(&name("5"), "127.0.0.1:7001", &peers).unwrap();
        assert_eq!(
            members.founding_voters(),
            vec![NodeId(3), NodeId(5), NodeId(7)]
        );
        assert_eq!(members.addr_of(NodeId(7)), Some("127.0.0.1:7002"));
    }

    #[test]
    fn addresses_without_host_or_port_are_refused_with_the_reason() {
        for good in [
            "127.0.0.1:7001",
            "[::1]:7001",
            "node-1.example:7001",
            "localhost:1",
        ] {
            assert_eq!(check_addr(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("notanaddress", "no port"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:", "no port"),
            ("127.0.0.1:0", "port 0"),
            ("127.0.0.1:http", "not a number"),
            ("127.0.0.1:70000", "not a number"),
            (":7001", "host name"),
            ("a b:7001", "host name"),
            ("::1", "host name"),
        ] {
            let error = check_addr(bad).unwrap_err();
            assert!(
                error.0.contains(why) && error.0.contains(bad),
                "{bad}: {error}"
            );
        }
        let error = Members::resolve(&name("1"), "notanaddress", &[]).unwrap_err();
        assert!(error.0.starts_with("-a: "), "{error}");
        let error =
            Members::resolve(&name("1"), "127.0.0.1:7001", &strings(&["7002"])).unwrap_err();
        assert!(error.0.contains("peer \"7002\""), "{error}");
    }

    #[test]
    fn mixed_and_conflicting_peer_lists_are_refused() {
        let mixed = strings(&["2=127.0.0.1:7002", "127.0.0.1:7003"]);
        assert!(Members::resolve(&name("1"), "127.0.0.1:7001", &mixed).is_err());
        let conflict = strings(&["1=127.0.0.1:7002"]);
        assert!(Members::resolve(&name("1"), "127.0.0.1:7001", &conflict).is_err());
        let shared = strings(&["2=127.0.0.1:7001"]);
        assert!(Members::resolve(&name("1"), "127.0.0.1:7001", &shared).is_err());
        assert!(NodeName::parse("0").is_err());
    }

    #[test]
    fn named_nodes_take_derived_ids_and_peers_may_be_named() {
        let plain = strings(&["127.0.0.1:8081", "127.0.0.1:8082"]);
        let members = Members::resolve(&name("node1"), "127.0.0.1:8080", &plain).unwrap();
        assert_eq!(members.own_id, NodeId(1));
        assert_eq!(
            members.describe_named(),
            "1=node1@127.0.0.1:8080,2=?@127.0.0.1:8081,3=?@127.0.0.1:8082"
        );
        let named = strings(&["b=127.0.0.1:8081", "c=127.0.0.1:8080", "a=127.0.0.1:8082"]);
        let members = Members::resolve(&name("a"), "127.0.0.1:8082", &named).unwrap();
        assert_eq!(members.own_id, NodeId(3));
        assert_eq!(
            members.describe_named(),
            "1=c@127.0.0.1:8080,2=b@127.0.0.1:8081,3=a@127.0.0.1:8082"
        );
        assert_eq!(members.id_named(&name("b")), Some(NodeId(2)));
    }

    #[test]
    fn names_that_clash_are_refused() {
        let own_listed_otherwise = strings(&["x=127.0.0.1:8080", "b=127.0.0.1:8081"]);
        let error =
            Members::resolve(&name("a"), "127.0.0.1:8080", &own_listed_otherwise).unwrap_err();
        assert!(error.0.contains("named both"), "{error}");
        let twice = strings(&["b=127.0.0.1:8081", "b=127.0.0.1:8082"]);
        let error = Members::resolve(&name("a"), "127.0.0.1:8080", &twice).unwrap_err();
        assert!(error.0.contains("two nodes are named b"), "{error}");
        let wrong_number = strings(&["b=127.0.0.1:8081", "1=127.0.0.1:8082"]);
        let error = Members::resolve(&name("a"), "127.0.0.1:8080", &wrong_number).unwrap_err();
        assert!(error.0.contains("127.0.0.1:8082 is not node 1"), "{error}");
        let bad = strings(&["no name=127.0.0.1:8081"]);
        let error = Members::resolve(&name("a"), "127.0.0.1:8080", &bad).unwrap_err();
        assert!(
            error.0.contains("peer \"no name=127.0.0.1:8081\""),
            "{error}"
        );
    }
}
