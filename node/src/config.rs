//! A node's static configuration: who is in the cluster, where they listen, and the timing
//! and size limits the runtime uses.
//!
//! ## Node ids and addresses
//!
//! The command line names peers by address (`-p "ADDR,ADDR"`), but Raft needs a stable id
//! for every voter (votes are stored by id). [`Members::resolve`] maps one to the other:
//! - **Explicit:** every peer written `ID=ADDR` (e.g. `-p "2=10.0.0.2:7000,3=10.0.0.3:7000"`);
//!   this node's own id is `-i`.
//! - **Derived:** plain addresses. The ids are `1..=N` in the sorted order of every address in
//!   the cluster (this node's `-a` and the peers), so every node derives the same mapping
//!   from the same address list. `-i` must then equal this node's position; a mismatch is
//!   refused with the mapping spelled out, never silently renumbered.
//!
//! Either way the peer handshake carries the sender's id, address, cluster name and the
//! whole membership, and a node refuses a peer whose view differs from its own, so two
//! nodes that were configured inconsistently never exchange a Raft message.

use crate::scheduling::Scheduling;
use replog_core::NodeId;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every voter's id and address (its single port serves peers and clients alike).
///
/// Invariant: holds at least this node; addresses are distinct; no id is 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    pub own_id: NodeId,
    pub addrs: BTreeMap<NodeId, String>,
}

impl Members {
    /// Builds the membership from `-i`, `-a` and the `-p` entries (see the module docs).
    /// This node's own address may appear among the peers, so one list serves every node.
    pub fn resolve(own_id: u64, own_addr: &str, peers: &[String]) -> Result<Members, ConfigError> {
        if own_id == 0 {
            return Err(ConfigError("node id 0 is reserved; ids start at 1".into()));
        }
        check_addr(own_addr).map_err(|error| ConfigError(format!("-a: {error}")))?;
        let peers: Vec<&str> = peers
            .iter()
            .map(|peer| peer.trim())
            .filter(|peer| !peer.is_empty())
            .collect();
        let explicit = peers.iter().filter(|peer| peer.contains('=')).count();
        let addrs = if explicit == 0 {
            derived_ids(own_id, own_addr, &peers)?
        } else if explicit == peers.len() {
            explicit_ids(own_id, own_addr, &peers)?
        } else {
            return Err(ConfigError(
                "peers must be all plain addresses or all ID=ADDR, not a mix".into(),
            ));
        };
        let mut seen: Vec<&String> = addrs.values().collect();
        seen.sort();
        if seen.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ConfigError(format!(
                "two nodes share an address in {}",
                describe(&addrs)
            )));
        }
        Ok(Members {
            own_id: NodeId(own_id),
            addrs,
        })
    }

    pub fn own_addr(&self) -> &str {
        &self.addrs[&self.own_id]
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.addrs.keys().copied().collect()
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

    /// The membership in one line, `1=ADDR,2=ADDR`: compared in the peer handshake.
    pub fn fingerprint(&self) -> String {
        describe(&self.addrs)
    }
}

fn describe(addrs: &BTreeMap<NodeId, String>) -> String {
    let parts: Vec<String> = addrs
        .iter()
        .map(|(id, addr)| format!("{}={addr}", id.0))
        .collect();
    parts.join(",")
}

fn explicit_ids(
    own_id: u64,
    own_addr: &str,
    peers: &[&str],
) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut addrs = BTreeMap::from([(NodeId(own_id), own_addr.to_string())]);
    for peer in peers {
        let (id, addr) = peer.split_once('=').expect("counted as explicit");
        let id: u64 = id.trim().parse().map_err(|_| {
            ConfigError(format!("peer {peer:?}: {id:?} is not a node id (a number)"))
        })?;
        if id == 0 {
            return Err(ConfigError(format!("peer {peer:?}: node id 0 is reserved")));
        }
        let addr = addr.trim().to_string();
        check_addr(&addr).map_err(|error| ConfigError(format!("peer {peer:?}: {error}")))?;
        match addrs.get(&NodeId(id)) {
            Some(known) if *known == addr => {} // This node itself, or a repeat.
            Some(known) => {
                return Err(ConfigError(format!(
                    "node id {id} is given two addresses: {known} and {addr}"
                )))
            }
            None => {
                addrs.insert(NodeId(id), addr);
            }
        }
    }
    Ok(addrs)
}

fn derived_ids(
    own_id: u64,
    own_addr: &str,
    peers: &[&str],
) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    for peer in peers {
        check_addr(peer).map_err(|error| ConfigError(format!("peer {peer:?}: {error}")))?;
    }
    let mut all: Vec<&str> = peers.to_vec();
    all.push(own_addr);
    all.sort_by(|a, b| address_order(a, b));
    all.dedup();
    let addrs: BTreeMap<NodeId, String> = all
        .iter()
        .enumerate()
        .map(|(position, addr)| (NodeId(position as u64 + 1), addr.to_string()))
        .collect();
    if addrs.get(&NodeId(own_id)).map(String::as_str) != Some(own_addr) {
        return Err(ConfigError(format!(
            "with plain peer addresses, node ids follow the sorted address list ({}), so \
             {own_addr} is not node {own_id}; pass the matching -i, or name every peer \
             as ID=ADDR",
            describe(&addrs)
        )));
    }
    Ok(addrs)
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

    #[test]
    fn derived_ids_follow_sorted_addresses_numerically() {
        let peers = strings(&["127.0.0.1:10000", "127.0.0.1:9000"]);
        let members = Members::resolve(2, "127.0.0.1:9500", &peers).unwrap();
        assert_eq!(
            members.fingerprint(),
            "1=127.0.0.1:9000,2=127.0.0.1:9500,3=127.0.0.1:10000"
        );
        assert_eq!(members.own_addr(), "127.0.0.1:9500");
    }

    #[test]
    fn derived_ids_refuse_a_mismatched_own_id() {
        let peers = strings(&["127.0.0.1:7002"]);
        let error = Members::resolve(2, "127.0.0.1:7001", &peers).unwrap_err();
        assert!(error.0.contains("1=127.0.0.1:7001"), "{error}");
    }

    #[test]
    fn own_address_in_the_peer_list_is_ignored() {
        let peers = strings(&["127.0.0.1:7001", "127.0.0.1:7002"]);
        let members = Members::resolve(1, "127.0.0.1:7001", &peers).unwrap();
        assert_eq!(members.voters(), vec![NodeId(1), NodeId(2)]);
    }

    #[test]
    fn explicit_ids_are_taken_as_given() {
        let peers = strings(&["7=127.0.0.1:7002", "3=127.0.0.1:7003"]);
        let members = Members::resolve(5, "127.0.0.1:7001", &peers).unwrap();
        assert_eq!(members.voters(), vec![NodeId(3), NodeId(5), NodeId(7)]);
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
        let error = Members::resolve(1, "notanaddress", &[]).unwrap_err();
        assert!(error.0.starts_with("-a: "), "{error}");
        let error = Members::resolve(1, "127.0.0.1:7001", &strings(&["7002"])).unwrap_err();
        assert!(error.0.contains("peer \"7002\""), "{error}");
    }

    #[test]
    fn mixed_and_conflicting_peer_lists_are_refused() {
        let mixed = strings(&["2=127.0.0.1:7002", "127.0.0.1:7003"]);
        assert!(Members::resolve(1, "127.0.0.1:7001", &mixed).is_err());
        let conflict = strings(&["1=127.0.0.1:7002"]);
        assert!(Members::resolve(1, "127.0.0.1:7001", &conflict).is_err());
        let shared = strings(&["2=127.0.0.1:7001"]);
        assert!(Members::resolve(1, "127.0.0.1:7001", &shared).is_err());
        assert!(Members::resolve(0, "127.0.0.1:7001", &[]).is_err());
    }
}
