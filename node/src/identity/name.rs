//! Node names and cluster ids: the two identities an operator types, checked once where
//! they enter (the command line, `cluster.json`, a peer's hello) and trusted after.

use crate::config::ConfigError;
use replog_core::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest name or cluster id, in bytes (all ASCII).
pub const MAX_NAME_BYTES: usize = 64;

/// The rule a name follows, as error messages state it.
pub const NAME_RULE: &str = "1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'";

/// A node's name (`-i node1`): what operators call it, and its data directory's name
/// (`data/<name>/`). An all-digit name is an old-style numeric id and also fixes the
/// node's numeric id (see [`NodeName::number`]).
///
/// Invariant: matches `[A-Za-z0-9_.-]{1,64}`, is not `.` or `..` (it names a directory),
/// and an all-digit name is a canonical number from 1 (no leading zeros).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// Checks `text` against the rule; an all-digit one is read as a number, so `-i 01`
    /// is node 1 (its data directory `data/1/`, as before names existed).
    pub fn parse(text: &str) -> Result<NodeName, ConfigError> {
        check_rule("node name", text)?;
        if text == "." || text == ".." {
            return Err(ConfigError(format!(
                "node name {text:?} is not allowed: it names a directory ({NAME_RULE}, \
                 not \".\" or \"..\")"
            )));
        }
        if text.bytes().all(|byte| byte.is_ascii_digit()) {
            let number: u64 = text.parse().map_err(|_| {
                ConfigError(format!(
                    "node id {text} is too big: a numeric id is at most {}",
                    u64::MAX
                ))
            })?;
            if number == 0 {
                return Err(ConfigError("node id 0 is reserved; ids start at 1".into()));
            }
            return Ok(NodeName(number.to_string()));
        }
        Ok(NodeName(text.to_string()))
    }

    /// The numeric name of node `id` (what a node named only by a number is called).
    pub fn of_number(id: NodeId) -> NodeName {
        assert!(id.0 != 0, "node id 0 is reserved");
        NodeName(id.0.to_string())
    }

    /// The numeric id an all-digit name stands for.
    pub fn number(&self) -> Option<NodeId> {
        self.0.parse().ok().map(NodeId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NodeName {
    type Error = ConfigError;
    fn try_from(text: String) -> Result<NodeName, ConfigError> {
        NodeName::parse(&text)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> String {
        name.0
    }
}

/// A cluster's identity: every node of one cluster holds the same one, recorded in its
/// data directory at its first start, and a peer hello naming another is refused. By
/// default derived from the cluster's name and founding members ([`ClusterId::derive`]),
/// so founding nodes agree without talking; `--cluster-id` gives one instead.
///
/// Invariant: matches `[A-Za-z0-9_.-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

impl ClusterId {
    pub fn parse(text: &str) -> Result<ClusterId, ConfigError> {
        check_rule("cluster id", text)?;
        Ok(ClusterId(text.to_string()))
    }

    /// The id founding nodes compute alike: 16 hex digits of SHA-256 over the cluster's
    /// name and its founding members (`1=ADDR,2=ADDR,...`, in id order), so two clusters
    /// that share a name but not their members get different ids.
    pub fn derive(cluster_name: &str, founding_members: &str) -> ClusterId {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(b"replog cluster id v1\0");
        hash.update((cluster_name.len() as u64).to_be_bytes());
        hash.update(cluster_name.as_bytes());
        hash.update((founding_members.len() as u64).to_be_bytes());
        hash.update(founding_members.as_bytes());
        ClusterId(crate::transport::auth::hex(&hash.finalize()[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ClusterId {
    type Error = ConfigError;
    fn try_from(text: String) -> Result<ClusterId, ConfigError> {
        ClusterId::parse(&text)
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> String {
        id.0
    }
}

fn check_rule(what: &str, text: &str) -> Result<(), ConfigError> {
    if text.is_empty() {
        return Err(ConfigError(format!(
            "{what} is empty; it must be {NAME_RULE}"
        )));
    }
    if text.len() > MAX_NAME_BYTES {
        return Err(ConfigError(format!(
            "{what} {:?}... is {} bytes long; it must be {NAME_RULE}",
            text.chars().take(16).collect::<String>(),
            text.len()
        )));
    }
    if let Some(bad) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ConfigError(format!(
            "{what} {text:?} holds {bad:?}; it must be {NAME_RULE}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_and_numbers_are_canonical() {
        for good in ["node1", "n", "db-2.east_1", &"x".repeat(64)] {
            assert_eq!(NodeName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(NodeName::parse("7").unwrap().number(), Some(NodeId(7)));
        assert_eq!(NodeName::parse("007").unwrap().as_str(), "7");
        assert_eq!(NodeName::parse("node7").unwrap().number(), None);
        for (bad, why) in [
            ("", "is empty"),
            ("node 1", "' '"),
            ("a/b", "'/'"),
            ("..", "names a directory"),
            ("0", "reserved"),
            ("99999999999999999999", "too big"),
        ] {
            let error = NodeName::parse(bad).unwrap_err().0;
            assert!(error.contains(why), "{bad:?}: {error}");
        }
        let long = NodeName::parse(&"x".repeat(65)).unwrap_err().0;
        assert!(
            long.contains("65 bytes") && long.contains(NAME_RULE),
            "{long}"
        );
    }

    #[test]
    fn derived_cluster_ids_differ_by_name_and_members() {
        let id = ClusterId::derive("replog", "1=a:1,2=b:2");
        assert_eq!(id, ClusterId::derive("replog", "1=a:1,2=b:2"));
        assert_eq!(id.as_str().len(), 16);
        assert_ne!(id, ClusterId::derive("other", "1=a:1,2=b:2"));
        assert_ne!(id, ClusterId::derive("replog", "1=a:1,2=c:2"));
        assert!(ClusterId::parse(id.as_str()).is_ok());
        assert!(ClusterId::parse("a b").is_err());
    }
}
