//! The peer transport against a real node: a connection that says hello as a member may
//! only speak for that member, to this node; malformed and oversize frames are dropped or
//! close the connection; none of it disturbs the cluster.

#[path = "node_support/mod.rs"]
mod support;

use replog_core::{Index, Message, MessageBody, NodeId, Term};
use replog_node::client::RoleName;
use replog_node::transport::wire::encode_frames;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::TestCluster;

const TIMEOUT: Duration = Duration::from_secs(20);

fn vote_request(from: u64, to: u64, term: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_log_index: Index(1000),
            last_log_term: Term(term),
            transfer: false,
        },
    }
}

fn frame(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frames(messages, &mut out);
    out
}

fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_peer_connection_speaks_only_for_its_own_node_and_bad_frames_change_nothing() {
    let mut cluster = TestCluster::start("transport", 3);
    let (leader, term) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    // Impersonate a follower that is down, so that it cannot interfere.
    let target = leader;
    let impostor = (leader + 1) % 3;
    let third = (leader + 2) % 3;
    cluster.cluster.kill(impostor);
    let hello = cluster.hello_as(impostor);
    let mut stream = TcpStream::connect(cluster.addr(target)).unwrap();
    stream.write_all(&hello.encode_line()).unwrap();
    let (target_id, impostor_id, third_id) =
        (target as u64 + 1, impostor as u64 + 1, third as u64 + 1);

    // Messages in another node's name, or for another node, are dropped and logged.
    let huge_term = term + 1000;
    stream
        .write_all(&frame(&[
            vote_request(third_id, target_id, huge_term),
            vote_request(impostor_id, third_id, huge_term),
        ]))
        .unwrap();
    // Not JSON, and JSON that is not a list of messages: dropped, connection kept.
    stream.write_all(&raw_frame(b"{not json")).unwrap();
    stream.write_all(&raw_frame(b"[{\"from\":1}]")).unwrap();
    let log_path = cluster.cluster.log_path(target);
    cluster.wait_for(TIMEOUT, "the dropped frames to be logged", |_| {
        let log = std::fs::read_to_string(&log_path).ok()?;
        let dropped =
            log.contains("messages from peer n") && log.contains("that were not from it to us");
        (dropped && log.matches("dropped a malformed frame").count() >= 2).then_some(())
    });
    // A length prefix beyond the limit closes the connection.
    stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    cluster.wait_for(TIMEOUT, "the oversize frame to be logged", |_| {
        let log = std::fs::read_to_string(&log_path).ok()?;
        log.contains("-byte frame (limit").then_some(())
    });

    // None of it reached Raft: same leader, same term, still committing.
    let state = cluster.status(target).expect("status");
    assert_eq!(state.role, RoleName::Leader);
    assert_eq!(state.term, term);
    cluster.append("after the impostor");
    cluster.cluster.restart(impostor).expect("restart");
    let (_, term_after) = cluster.stable_leader(&[0, 1, 2], TIMEOUT);
    assert!(term_after < huge_term);
}
