//! The node's side of membership changes: how a member's name and address ride in the
//! core's configuration entries, how the address book follows them, and how an operator's
//! `member` request becomes a core [`MembershipChange`].
//!
//! The core decides everything about a change that Raft cares about (one at a time, not
//! before the leader committed in its term, a learner promoted only once caught up, never
//! the last voter: `replog_core::membership`). What is left here is what only the node
//! knows: names and addresses.
//! - A configuration entry carries each added member's `name@addr` in its opaque `meta`
//!   ([`encode_meta`]); the founders' entries carry none, their addresses are in every
//!   node's `cluster.json`.
//! - The address book ([`Members`]) learns every configuration a node appends
//!   ([`learn`]), in the log's order, so that a node can dial and admit a member as soon as
//!   it knows of it. An older configuration replayed during a catch-up never overrides
//!   what a newer one taught (`Members::since`); a removed member's name and address may
//!   be taken by a later member, which then replaces it in the book.
//! - An added member gets the next id after every id the leader's book and the
//!   configuration hold (a numeric name is its own id): ids are never handed out twice by
//!   one leader, and a node that comes back with a reused id is refused by its name.
//! - Adding a name or an address that a member of the configuration in force holds is
//!   refused, naming the holder; so is promoting or removing a name that is no member.

use crate::config::{check_addr, Members};
use crate::identity::NodeName;
use replog_core::{Membership, MembershipChange, MembershipCheckpoint, NodeId};

/// The `meta` of a member added at run time: `name@addr`.
pub fn encode_meta(name: &NodeName, addr: &str) -> String {
    format!("{name}@{addr}")
}

/// The name and address in a member's `meta`; `None` for a founder's (empty) or one this
/// node cannot read (written by something other than replog's node).
pub fn decode_meta(meta: &str) -> Option<(NodeName, String)> {
    let (name, addr) = meta.split_once('@')?;
    let name = NodeName::parse(name).ok()?;
    check_addr(addr).ok()?;
    Some((name, addr.to_string()))
}

/// Teaches `members` the members of `checkpoint`, a configuration this node appended (or
/// recovered, or was installed). Returns whether the book changed.
pub fn learn(members: &mut Members, checkpoint: &MembershipCheckpoint) -> bool {
    let index = checkpoint.index.0;
    let in_config = |id: NodeId| checkpoint.membership.get(id).is_some();
    let mut changed = false;
    for member in checkpoint.membership.members() {
        let Some((name, addr)) = decode_meta(&member.meta) else {
            continue;
        };
        let id = member.id;
        if id == members.own_id {
            continue; // This node knows its own name and address best.
        }
        let known = members.addrs.contains_key(&id)
            && members.addrs[&id] == addr
            && members.name_of(id) == Some(&name);
        if known {
            continue;
        }
        if members.addrs.contains_key(&id) && members.since(id) > index {
            continue; // A newer configuration said otherwise.
        }
        // Whoever holds the name or the address now and is not in this configuration was
        // removed before it: a newer holder wins, an older one gives way.
        let holders: Vec<NodeId> = members
            .addrs
            .iter()
            .filter(|(&other, other_addr)| {
                other != id && (**other_addr == addr || members.names.get(&other) == Some(&name))
            })
            .map(|(&other, _)| other)
            .collect();
        let blocked = holders.iter().any(|&other| {
            other == members.own_id || in_config(other) || members.since(other) > index
        });
        if blocked {
            continue;
        }
        for other in holders {
            members.addrs.remove(&other);
            members.names.remove(&other);
            members.since.remove(&other);
        }
        members.addrs.insert(id, addr);
        members.names.insert(id, name);
        members.since.insert(id, index);
        changed = true;
    }
    debug_assert!(members.check_names().is_ok(), "{members:?}");
    changed
}

/// What an operator asks of the membership (`member add|promote|remove`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    /// Add a learner called `name` reached at `addr`.
    Add {
        name: NodeName,
        addr: String,
    },
    Promote {
        name: String,
    },
    Remove {
        name: String,
    },
}

/// The core change for `request`, or why it is refused before reaching the core.
pub fn change_for(
    request: &MemberRequest,
    in_force: &Membership,
    members: &Members,
) -> Result<MembershipChange, String> {
    match request {
        MemberRequest::Add { name, addr } => {
            check_addr(addr).map_err(|error| format!("cannot add {name}: {error}"))?;
            for (&id, held) in &members.addrs {
                if in_force.get(id).is_none() {
                    continue;
                }
                let holder = describe(members, id);
                if members.name_of(id) == Some(name) {
                    return Err(format!(
                        "cannot add {name}: it is a member already ({holder})"
                    ));
                }
                if held == addr {
                    return Err(format!(
                        "cannot add {name} at {addr}: member {holder} is at that address"
                    ));
                }
            }
            let id = match name.number() {
                Some(id) if in_force.get(id).is_some() || members.addrs.contains_key(&id) => {
                    return Err(format!(
                        "cannot add {name}: a numeric name is its node id, and node {} is \
                         taken ({})",
                        id.0,
                        describe(members, id)
                    ))
                }
                Some(id) => id,
                None => next_id(in_force, members),
            };
            Ok(MembershipChange::AddLearner {
                id,
                meta: encode_meta(name, addr),
            })
        }
        MemberRequest::Promote { name } => {
            let id = resolve(name, in_force, members)?;
            Ok(MembershipChange::Promote { id })
        }
        MemberRequest::Remove { name } => {
            let id = resolve(name, in_force, members)?;
            Ok(MembershipChange::Remove { id })
        }
    }
}

/// The id an added member gets: past every id the book and the configuration hold.
fn next_id(in_force: &Membership, members: &Members) -> NodeId {
    let highest = (in_force.members().iter().map(|member| member.id))
        .chain(members.addrs.keys().copied())
        .chain(members.founders.keys().copied())
        .max()
        .unwrap_or(NodeId(0));
    NodeId(highest.0 + 1)
}

/// The member of the configuration in force that `name` (a name, or an id in decimal)
/// names.
pub fn resolve(name: &str, in_force: &Membership, members: &Members) -> Result<NodeId, String> {
    let by_name = NodeName::parse(name)
        .ok()
        .and_then(|parsed| members.id_named(&parsed));
    let by_number = name.parse::<u64>().ok().map(NodeId);
    match by_name.or(by_number) {
        Some(id) if in_force.get(id).is_some() => Ok(id),
        _ => Err(format!(
            "{name} is no member of the configuration in force ({})",
            describe_configuration(in_force, members)
        )),
    }
}

/// `node2, id 2, at ADDR`.
fn describe(members: &Members, id: NodeId) -> String {
    let name = members.name_of(id).map_or("?", NodeName::as_str);
    let addr = members.addr_of(id).unwrap_or("?");
    format!("{name}, id {}, at {addr}", id.0)
}

/// `voters node1, node2; learners node4`.
pub fn describe_configuration(in_force: &Membership, members: &Members) -> String {
    let named = |ids: Vec<NodeId>| -> String {
        if ids.is_empty() {
            return "none".into();
        }
        let names: Vec<String> = ids
            .into_iter()
            .map(|id| {
                members
                    .name_of(id)
                    .map_or(id.0.to_string(), ToString::to_string)
            })
            .collect();
        names.join(", ")
    };
    format!(
        "voters {}; learners {}",
        named(in_force.voters()),
        named(in_force.learners())
    )
}

/// The peers this node dials while `in_force` is the configuration in force: its members
/// but this node, at the addresses the book holds.
pub fn peers_of(in_force: &Membership, members: &Members) -> Vec<(NodeId, String)> {
    in_force
        .others(members.own_id)
        .into_iter()
        .filter_map(|id| Some((id, members.addr_of(id)?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use replog_core::{Index, Member};

    fn founders() -> Members {
        let own = NodeName::parse("node1").unwrap();
        let peers = vec!["node2=127.0.0.1:8081".into(), "node3=127.0.0.1:8082".into()];
        Members::resolve(&own, "127.0.0.1:8080", &peers).unwrap()
    }

    fn config(members: &[(u64, bool, &str)]) -> Membership {
        let members = members
            .iter()
            .map(|&(id, voter, meta)| Member {
                id: NodeId(id),
                voter,
                meta: meta.into(),
            })
            .collect();
        Membership::new(members).unwrap()
    }

    fn at(index: u64, membership: Membership) -> MembershipCheckpoint {
        MembershipCheckpoint {
            index: Index(index),
            membership,
        }
    }

    #[test]
    fn meta_round_trips_and_garbage_is_ignored() {
        let name = NodeName::parse("node4").unwrap();
        let meta = encode_meta(&name, "127.0.0.1:8083");
        assert_eq!(meta, "node4@127.0.0.1:8083");
        assert_eq!(decode_meta(&meta), Some((name, "127.0.0.1:8083".into())));
        for garbage in ["", "node4", "no de@127.0.0.1:1", "node4@nowhere"] {
            assert_eq!(decode_meta(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn an_added_member_is_learned_and_a_replayed_older_configuration_does_not_undo_it() {
        let mut members = founders();
        let added = config(&[
            (1, true, ""),
            (2, true, ""),
            (3, true, ""),
            (4, false, "node4@127.0.0.1:8083"),
        ]);
        assert!(learn(&mut members, &at(10, added.clone())));
        assert_eq!(members.addr_of(NodeId(4)), Some("127.0.0.1:8083"));
        assert_eq!(members.since(NodeId(4)), 10);
        assert!(!learn(&mut members, &at(10, added)), "learned once");
        // Node 3 is removed, and node 5 takes its address; node 3 is gone from the book.
        let replaced = config(&[
            (1, true, ""),
            (2, true, ""),
            (4, true, "node4@127.0.0.1:8083"),
            (5, false, "node5@127.0.0.1:8082"),
        ]);
        assert!(learn(&mut members, &at(20, replaced)));
        assert_eq!(members.addr_of(NodeId(3)), None);
        assert_eq!(members.addr_of(NodeId(5)), Some("127.0.0.1:8082"));
        // A catch-up replays a configuration older than the one node 5 came from, where
        // another node held node 5's address: node 5 stays.
        let older = config(&[
            (1, true, ""),
            (2, true, ""),
            (6, false, "old@127.0.0.1:8082"),
        ]);
        assert!(!learn(&mut members, &at(15, older)));
        assert_eq!(members.name_of(NodeId(5)).unwrap().as_str(), "node5");
        assert_eq!(members.addr_of(NodeId(6)), None);
        assert_eq!(
            members.founding_voters(),
            vec![NodeId(1), NodeId(2), NodeId(3)]
        );
    }

    #[test]
    fn adds_of_a_held_name_or_address_are_refused_naming_the_holder() {
        let mut members = founders();
        let in_force = config(&[
            (1, true, ""),
            (2, true, ""),
            (3, true, ""),
            (4, false, "node4@127.0.0.1:8083"),
        ]);
        learn(&mut members, &at(7, in_force.clone()));
        let add = |name: &str, addr: &str| {
            let name = NodeName::parse(name).unwrap();
            let request = MemberRequest::Add {
                name,
                addr: addr.into(),
            };
            change_for(&request, &in_force, &members)
        };
        let error = add("node2", "127.0.0.1:9000").unwrap_err();
        assert!(
            error.contains("cannot add node2: it is a member already"),
            "{error}"
        );
        let error = add("node9", "127.0.0.1:8083").unwrap_err();
        assert!(
            error.contains("member node4, id 4, at 127.0.0.1:8083 is at that"),
            "{error}"
        );
        let error = add("node9", "nowhere").unwrap_err();
        assert!(error.contains("cannot add node9"), "{error}");
        let error = add("4", "127.0.0.1:9000").unwrap_err();
        assert!(error.contains("node 4 is taken"), "{error}");
        assert_eq!(
            add("node5", "127.0.0.1:9000"),
            Ok(MembershipChange::AddLearner {
                id: NodeId(5),
                meta: "node5@127.0.0.1:9000".into()
            })
        );
        assert_eq!(
            add("9", "127.0.0.1:9000"),
            Ok(MembershipChange::AddLearner {
                id: NodeId(9),
                meta: "9@127.0.0.1:9000".into()
            })
        );
        let promote = |name: &str| {
            let request = MemberRequest::Promote { name: name.into() };
            change_for(&request, &in_force, &members)
        };
        assert_eq!(
            promote("node4"),
            Ok(MembershipChange::Promote { id: NodeId(4) })
        );
        assert_eq!(
            promote("4"),
            Ok(MembershipChange::Promote { id: NodeId(4) })
        );
        let error = promote("node7").unwrap_err();
        assert_eq!(
            error,
            "node7 is no member of the configuration in force (voters node1, node2, node3; \
             learners node4)"
        );
    }
}
