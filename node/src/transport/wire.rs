//! The peer protocol on the wire.
//!
//! A peer connection carries Raft messages one way: the dialing node sends, the listening
//! node receives (each node dials every other one, so a pair of nodes uses two
//! connections). It opens with a handshake of JSON lines on the same port clients use; a
//! client's first line never has op `peer_hello`, which is how the listener tells the two
//! apart:
//!
//! ```text
//! dialer:   {"op":"peer_hello",...,"nonce":N1}      (nonce only with a cluster secret)
//! listener: {"op":"peer_challenge","nonce":N2,"proof":P1}   (only with a cluster secret)
//! dialer:   {"op":"peer_proof","proof":P2}                  (only with a cluster secret)
//! listener: {"op":"peer_accepted","from":ID}   or a bad_request line saying why not
//! ```
//!
//! (`transport::auth` says what the proofs are.) After `peer_accepted` the dialer sends
//! frames: a 4-byte big-endian length, then that many bytes holding a JSON array of Raft
//! [`Message`]s. The listener only writes [`LINK_ACK`] bytes back, at most every
//! [`ACK_INTERVAL`] while frames arrive, so that the dialer can tell a link that delivers
//! from one whose packets vanish.

use crate::config::NodeConfig;
use replog_core::{Message, NodeId};
use serde::{Deserialize, Serialize};

/// The op of the first line of a peer connection.
pub const PEER_HELLO_OP: &str = "peer_hello";
/// Bumped when the frame format changes; peers of another version are refused.
pub const PROTOCOL_VERSION: u32 = 2;
/// The byte a listener writes back on a peer connection to say that frames arrive.
pub const LINK_ACK: u8 = 0x06;
/// How often, at most, a listener acknowledges a connection's frames.
pub const ACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// A sender closes a frame once it passes this size (one message may exceed it).
pub const FRAME_SOFT_LIMIT_BYTES: usize = 1 << 20;

/// The first line of a peer connection: who is speaking, and its view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub op: String,
    pub version: u32,
    pub cluster: String,
    /// The sender's whole membership, `1=ADDR,2=ADDR,...` (see `Members::fingerprint`).
    pub members: String,
    pub from: u64,
    pub addr: String,
    /// The dialer's fresh nonce (hex), when it authenticates with a cluster secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
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
    pub fn new(config: &NodeConfig) -> Hello {
        Hello {
            op: PEER_HELLO_OP.to_string(),
            version: PROTOCOL_VERSION,
            cluster: config.cluster.clone(),
            members: config.members.fingerprint(),
            from: config.members.own_id.0,
            addr: config.members.own_addr().to_string(),
            nonce: None,
        }
    }

    pub fn encode_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a hello always serializes");
        line.push(b'\n');
        line
    }

    pub fn parse(line: &[u8]) -> Result<Hello, String> {
        serde_json::from_slice(line).map_err(|error| format!("malformed peer hello: {error}"))
    }

    /// Checks a peer's hello against `ours`: same version, cluster and membership, and a
    /// sender that is another member at the address we know it by. Returns the sender's id.
    pub fn check(&self, ours: &Hello) -> Result<NodeId, String> {
        if self.version != ours.version {
            return Err(format!(
                "protocol version {} (ours is {})",
                self.version, ours.version
            ));
        }
        if self.cluster != ours.cluster {
            return Err(format!(
                "cluster {:?} (ours is {:?})",
                self.cluster, ours.cluster
            ));
        }
        if self.members != ours.members {
            return Err(format!(
                "membership {} differs from ours {}; check -i and -p on both nodes",
                self.members, ours.members
            ));
        }
        if self.from == ours.from {
            return Err(format!("claims our own id {}", self.from));
        }
        let expected = format!("{}={}", self.from, self.addr);
        if !self.members.split(',').any(|member| member == expected) {
            return Err(format!(
                "claims to be node {} at {}, which the membership does not list",
                self.from, self.addr
            ));
        }
        Ok(NodeId(self.from))
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

    fn hello(from: u64, addr: &str, members: &str) -> Hello {
        Hello {
            op: PEER_HELLO_OP.into(),
            version: PROTOCOL_VERSION,
            cluster: "replog".into(),
            members: members.into(),
            from,
            addr: addr.into(),
            nonce: None,
        }
    }

    #[test]
    fn hello_check_refuses_strangers_and_mismatched_views() {
        let members = "1=a:1,2=b:2,3=c:3";
        let ours = hello(1, "a:1", members);
        assert_eq!(hello(2, "b:2", members).check(&ours), Ok(NodeId(2)));
        assert!(hello(2, "c:3", members).check(&ours).is_err());
        assert!(hello(1, "a:1", members).check(&ours).is_err());
        assert!(hello(4, "d:4", members).check(&ours).is_err());
        assert!(hello(2, "b:2", "1=a:1,2=b:2").check(&ours).is_err());
        let mut other_cluster = hello(2, "b:2", members);
        other_cluster.cluster = "other".into();
        assert!(other_cluster.check(&ours).is_err());
    }
}
