//! The peer protocol on the wire.
//!
//! A peer connection carries Raft messages one way: the dialing node sends, the listening
//! node receives (each node dials every other one, so a pair of nodes uses two
//! connections). It opens with a handshake of JSON lines on the same port clients use; a
//! client's first line never has op `peer_hello`, which is how the listener tells the two
//! apart:
//!
//! ```text
//! dialer:   {"op":"peer_hello","version":3,"cluster":C,"cluster_id":I,"from":ID,
//!            "name":NAME,"addr":ADDR,"members":M,"nonce":N1}  (nonce only with a secret)
//! listener: {"op":"peer_challenge","nonce":N2,"proof":P1}   (only with a cluster secret)
//! dialer:   {"op":"peer_proof","proof":P2}                  (only with a cluster secret)
//! listener: {"op":"peer_accepted","from":ID}   or a bad_request line saying why not
//! ```
//!
//! The listener admits the dialer if its claim (cluster, cluster id, id, name, address)
//! agrees with what it knows of the members (`identity::Roster::check`, which also learns
//! the dialer's name if it was known only by its address). (`transport::auth` says what
//! the proofs are; they cover the whole hello line, so every field of the claim.) After `peer_accepted` the dialer sends
//! frames: a 4-byte big-endian length, then that many bytes holding a JSON array of Raft
//! [`Message`]s. The listener only writes [`LINK_ACK`] bytes back, at most every
//! [`ACK_INTERVAL`] while frames arrive, so that the dialer can tell a link that delivers
//! from one whose packets vanish.

use crate::config::NodeConfig;
use crate::identity::{Claim, ClusterId, NodeName, Roster};
use replog_core::{Message, NodeId};
use serde::{Deserialize, Serialize};

/// The op of the first line of a peer connection.
pub const PEER_HELLO_OP: &str = "peer_hello";
/// Bumped when the hello or the frame format changes; peers of another version are
/// refused.
/// Version 3: the hello names the cluster's id and the sender's name, instead of
/// carrying a membership every node must match.
pub const PROTOCOL_VERSION: u32 = 3;
/// The byte a listener writes back on a peer connection to say that frames arrive.
pub const LINK_ACK: u8 = 0x06;
/// How often, at most, a listener acknowledges a connection's frames.
pub const ACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A sender closes a frame once it passes this size (one message may exceed it).
pub const FRAME_SOFT_LIMIT_BYTES: usize = 1 << 20;

/// The first line of a peer connection: who is speaking, and of which cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub op: String,
    pub version: u32,
    /// The cluster's name (`--cluster`).
    pub cluster: String,
    /// The cluster's id (`identity::ClusterId`), recorded by every node at its first start.
    pub cluster_id: ClusterId,
    /// The sender's numeric id.
    pub from: u64,
    /// The sender's name (`-i`).
    pub name: NodeName,
    /// The address the sender is reached at (its `-a`).
    pub addr: String,
    /// The sender's members, `1=ADDR,2=ADDR,...`. Not checked: sent only so that a node
    /// of protocol 2, which requires the field, reads this hello as far as its version
    /// and refuses it by that, naming both versions.
    pub members: String,
    /// The dialer's fresh nonce (hex), when it authenticates with a cluster secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// What every version's hello holds: read first, so that a hello of another version is
/// refused by its version rather than by a field it lacks.
#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

/// The handshake lines after the hello (a refusal is a client `bad_request` line instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HandshakeLine {
    /// The listener's nonce and its proof of the cluster secret.
    PeerChallenge { nonce: String, proof: String },
    /// The dialer's proof of the cluster secret.
    PeerProof { proof: String },
    /// The listener takes frames from now on.
    PeerAccepted { from: u64 },
}

impl HandshakeLine {
    pub fn encode_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a handshake line always serializes");
        line.push(b'\n');
        line
    }
}

impl Hello {
    /// This node's hello.
    pub fn new(config: &NodeConfig, roster: &Roster) -> Hello {
        let members = roster.members();
        Hello {
            op: PEER_HELLO_OP.to_string(),
            version: PROTOCOL_VERSION,
            cluster: config.cluster.clone(),
            cluster_id: roster.cluster_id().clone(),
            from: members.own_id.0,
            name: members.own_name().clone(),
            addr: members.own_addr().to_string(),
            members: members.fingerprint(),
            nonce: None,
        }
    }

    pub fn encode_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a hello always serializes");
        line.push(b'\n');
        line
    }

    /// A hello line as a checked value; one of another protocol version is refused naming
    /// both versions.
    pub fn parse(line: &[u8]) -> Result<Hello, String> {
        let malformed = |error: serde_json::Error| format!("malformed peer hello: {error}");
        let versioned: Versioned = serde_json::from_slice(line).map_err(malformed)?;
        if versioned.version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} (ours is {PROTOCOL_VERSION}): run the same replog \
                 version on every node",
                versioned.version
            ));
        }
        serde_json::from_slice(line).map_err(malformed)
    }

    /// What the hello claims, for `Roster::check`.
    pub fn claim(&self) -> Claim<'_> {
        Claim {
            cluster: &self.cluster,
            cluster_id: &self.cluster_id,
            id: NodeId(self.from),
            name: &self.name,
            addr: &self.addr,
        }
    }
}

/// Appends `messages` to `out` as frames of at most about [`FRAME_SOFT_LIMIT_BYTES`].
pub fn encode_frames<'a>(messages: impl IntoIterator<Item = &'a Message>, out: &mut Vec<u8>) {
    let mut frame_start = None;
    for message in messages {
        let start = match frame_start {
            Some(start) => {
                out.push(b',');
                start
            }
            None => {
                let start = out.len();
                out.extend_from_slice(&[0, 0, 0, 0, b'[']);
                frame_start = Some(start);
                start
            }
        };
        serde_json::to_writer(&mut *out, message).expect("a message always serializes");
        if out.len() - start >= FRAME_SOFT_LIMIT_BYTES {
            close_frame(start, out);
            frame_start = None;
        }
    }
    if let Some(start) = frame_start {
        close_frame(start, out);
    }
}

fn close_frame(start: usize, out: &mut Vec<u8>) {
    out.push(b']');
    let length = u32::try_from(out.len() - start - 4).expect("frame under 4 GiB");
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
}

pub fn decode_frame(payload: &[u8]) -> Result<Vec<Message>, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    use replog_core::{Entry, Index, MessageBody, Payload, Term};
    use std::io::{self, Read};

    /// Reads one frame's payload into `payload`; `false` at the end of the stream. The
    /// node reads frames in its poll loop (`receiver.rs`, which also enforces the size
    /// limit); this blocking reader only lets the tests check what `encode_frames` wrote.
    fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<bool> {
        let mut prefix = [0u8; 4];
        match reader.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(error) => return Err(error),
        }
        payload.clear();
        payload.resize(u32::from_be_bytes(prefix) as usize, 0);
        reader.read_exact(payload)?;
        Ok(true)
    }

    fn append(to: u64, command_bytes: usize) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(to),
            term: Term(3),
            body: MessageBody::AppendEntries {
                prev_log_index: Index(0),
                prev_log_term: Term(0),
                entries: vec![Entry {
                    index: Index(1),
                    term: Term(3),
                    payload: Payload::Command("x".repeat(command_bytes).into()),
                }],
                leader_commit: Index(0),
            },
        }
    }

    #[test]
    fn frames_round_trip_and_split_at_the_soft_limit() {
        let messages: Vec<Message> = (0..5)
            .map(|_| append(2, FRAME_SOFT_LIMIT_BYTES / 2))
            .collect();
        let mut out = Vec::new();
        encode_frames(&messages, &mut out);
        let mut reader = io::Cursor::new(out);
        let mut payload = Vec::new();
        let mut decoded = Vec::new();
        let mut frames = 0;
        while read_frame(&mut reader, &mut payload).unwrap() {
            decoded.extend(decode_frame(&payload).unwrap());
            frames += 1;
        }
        assert_eq!(decoded, messages);
        assert_eq!(frames, 3);
    }

    #[test]
    fn a_hello_of_another_version_is_refused_naming_both() {
        let old = br#"{"op":"peer_hello","version":2,"cluster":"replog","members":"1=a:1","from":1,"addr":"a:1"}"#;
        let error = Hello::parse(old).unwrap_err();
        assert!(error.contains("protocol version 2 (ours is 3)"), "{error}");
        let hello = Hello {
            op: PEER_HELLO_OP.into(),
            version: PROTOCOL_VERSION,
            cluster: "replog".into(),
            cluster_id: ClusterId::parse("c1").unwrap(),
            from: 2,
            name: NodeName::parse("node2").unwrap(),
            addr: "b:2".into(),
            members: "1=a:1,2=b:2".into(),
            nonce: None,
        };
        let line = hello.encode_line();
        assert_eq!(Hello::parse(&line[..line.len() - 1]), Ok(hello));
        let bad_name = String::from_utf8(line).unwrap().replace("node2", "no/de");
        let error = Hello::parse(bad_name.trim_end().as_bytes()).unwrap_err();
        assert!(
            error.contains("malformed peer hello") && error.contains("'/'"),
            "{error}"
        );
    }
}
