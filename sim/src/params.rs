//! What one run is made of: cluster, core, network, disk, fault and workload settings.
//!
//! In a sweep every seed draws its own settings ("swarm testing", Groce et al. 2012): one
//! seed loses 25 % of its messages with fast disks, the next has a perfect network and slow
//! fsyncs with frequent crashes. A mix that disables some faults lets others reach states
//! that a uniform blend of everything would drown out.

use crate::rng::{Ratio, SimRng};
use replog_core::{Config, NodeId};

/// The faults the swarm draws from, each with its own weight per seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Split,
    Isolate,
    IsolateLeader,
    Minority,
    OneWay,
    Bridge,
    Flap,
    CrashRandom,
    CrashLeader,
    CrashMajority,
    Pause,
    Transfer,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Split,
        FaultKind::Isolate,
        FaultKind::IsolateLeader,
        FaultKind::Minority,
        FaultKind::OneWay,
        FaultKind::Bridge,
        FaultKind::Flap,
        FaultKind::CrashRandom,
        FaultKind::CrashLeader,
        FaultKind::CrashMajority,
        FaultKind::Pause,
        FaultKind::Transfer,
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub nodes: usize,
    /// Nominal length of one core tick; each node's own clock may run faster or slower.
    pub tick_us: u64,
    /// Each node's tick period is off by up to this many percent, either way.
    pub skew_percent_max: u32,
    /// The core's settings, shared by every node; `core_config` fills in each node's id,
    /// the voters and the timeout seed.
    pub core: Config,
    pub net: NetParams,
    pub disk: DiskParams,
    pub faults: FaultParams,
    pub workload: WorkloadParams,
    pub membership: MembershipParams,
}

/// Configuration changes in the swarm (`engine/membership.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipParams {
    /// Extra nodes, ids after the cluster's, booted empty and not members until added.
    pub spares: usize,
    /// Gap between two drawn changes; 0 for none.
    pub interval_us_min: u64,
    pub interval_us_max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetParams {
    /// One-way latency is uniform in `[min, max]`.
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    pub loss: Ratio,
    pub duplicate: Ratio,
    /// Messages delayed by an extra uniform `0..=reorder_delay_us_max`, overtaken by later ones.
    pub reorder: Ratio,
    pub reorder_delay_us_max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskParams {
    pub fsync_us_min: u64,
    pub fsync_us_max: u64,
    /// An fsync that stalls for up to `slow_fsync_us_max` instead.
    pub slow_fsync: Ratio,
    pub slow_fsync_us_max: u64,
    /// At a crash, the chance that the OS had written some unsynced records to disk anyway.
    pub unsynced_survive: Ratio,
    /// Given that some survived, the chance that the last one is torn part-way.
    pub torn: Ratio,
    /// The log's segment size: a segment is sealed when the next write would take it past
    /// this (`replog_driver::segments`), and trims delete whole sealed segments only.
    pub segment_bytes: u64,
}

/// The simulated disks' segment size unless a scenario sets one: the node's smallest
/// (`--segment-bytes 4096`), some 50 short entries, so that a 60 s run seals and trims
/// many.
pub const SEGMENT_BYTES_DEFAULT: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultParams {
    /// Random faults arrive every `[min, max]`; `max == 0` disables them.
    pub interval_us_min: u64,
    pub interval_us_max: u64,
    /// Weight of each of [`FaultKind::ALL`], in that order.
    pub weights: [u32; FaultKind::ALL.len()],
    /// A crashed node stays down for `[min, max]`.
    pub down_us_min: u64,
    pub down_us_max: u64,
    /// After a step that sends while the node's disk holds unsynced writes, crash it with
    /// this probability: the instant at which durability bugs (an acknowledgement or vote
    /// that outruns its fsync) turn into lost state.
    pub crash_unsynced: Ratio,
    /// Crash or isolate a node that has just become leader, up to `new_leader_crash_us_max`
    /// later, with this probability: leaders that die or are cut off mid-replication leave
    /// the divergent, partly replicated tails behind that commitment rules exist for
    /// (Raft paper, Figure 8).
    pub crash_new_leader: Ratio,
    pub new_leader_crash_us_max: u64,
    pub pause_us_max: u64,
    pub partition_us_max: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadParams {
    pub clients: usize,
    /// A client waits uniform `0..=think_us_max` between operations.
    pub think_us_max: u64,
    /// A client gives up on an operation (outcome unknown) after this long.
    pub timeout_us: u64,
    /// Every this often (0: never) the leader proposes a retention point (`Input::Trim`)
    /// a uniform `0..=trim_keep_max` entries below its applied index, as `--retain-entries`
    /// does on a real node.
    pub trim_interval_us: u64,
    pub trim_keep_max: u64,
    /// Percent of client operations that are reads (of a consistency drawn per read).
    pub read_percent: u64,
    /// The share of appends that carry a `(client, seq)`: their client retries them, after
    /// a timeout or a lost entry, with the same sequence number instead of giving up.
    pub session_appends: Ratio,
}

impl Params {
    /// A well-behaved cluster: no random faults, no loss. Scenario files start from here.
    pub fn calm(nodes: usize) -> Params {
        Params {
            nodes,
            tick_us: 10_000,
            skew_percent_max: 0,
            core: Config {
                max_append_entries: 64,
                max_inflight_appends: 4,
                ..Config::new(NodeId(1), vec![NodeId(1)])
            },
            net: NetParams {
                latency_us_min: 500,
                latency_us_max: 5_000,
                loss: Ratio::NEVER,
                duplicate: Ratio::NEVER,
                reorder: Ratio::NEVER,
                reorder_delay_us_max: 0,
            },
            disk: DiskParams {
                fsync_us_min: 100,
                fsync_us_max: 2_000,
                slow_fsync: Ratio::NEVER,
                slow_fsync_us_max: 0,
                unsynced_survive: Ratio(1, 2),
                torn: Ratio(1, 2),
                segment_bytes: SEGMENT_BYTES_DEFAULT,
            },
            faults: FaultParams {
                interval_us_min: 0,
                interval_us_max: 0,
                weights: [0; FaultKind::ALL.len()],
                down_us_min: 50_000,
                down_us_max: 2_000_000,
                crash_unsynced: Ratio::NEVER,
                crash_new_leader: Ratio::NEVER,
                new_leader_crash_us_max: 0,
                pause_us_max: 1_000_000,
                partition_us_max: 3_000_000,
            },
            workload: WorkloadParams {
                clients: 3,
                think_us_max: 20_000,
                timeout_us: 1_000_000,
                trim_interval_us: 0,
                trim_keep_max: 0,
                read_percent: 0,
                session_appends: Ratio::NEVER,
            },
            membership: MembershipParams {
                spares: 0,
                interval_us_min: 0,
                interval_us_max: 0,
            },
        }
    }

    /// The settings of one swarm seed, drawn from the seed's own stream.
    pub fn swarm(nodes: usize, rng: &mut SimRng) -> Params {
        let mut params = Params::calm(nodes);
        params.skew_percent_max = *rng.pick(&[0, 0, 10, 30, 50]);
        params.core = swarm_core(rng);
        params.net = swarm_net(rng);
        params.disk = swarm_disk(rng);
        params.faults = swarm_faults(rng);
        params.workload = WorkloadParams {
            clients: rng.between(1, 5) as usize,
            think_us_max: *rng.pick(&[1_000, 20_000, 100_000]),
            timeout_us: rng.between(500_000, 2_000_000),
            trim_interval_us: *rng.pick(&[0, 0, 100_000, 500_000, 2_000_000]),
            trim_keep_max: *rng.pick(&[0, 5, 50]),
            read_percent: 0,
            session_appends: Ratio::NEVER,
        };
        // Drawn last, so that every earlier draw stays what it was.
        params.workload.read_percent = *rng.pick(&[0, 10, 30, 60]);
        if params.core.check_quorum && rng.chance(Ratio(1, 2)) {
            params.core.read_lease = true;
            // Leases are safe only within the clock bound `Config::lease_ticks` states.
            params.skew_percent_max = params.skew_percent_max.min(LEASE_SKEW_PERCENT_MAX);
        }
        params.workload.session_appends = *rng.pick(&[Ratio::NEVER, Ratio(1, 2), Ratio(1, 1)]);
        // The transfer fault's weight, drawn after everything else (like the lease above):
        // a seed that draws none runs exactly as before the fault existed.
        if rng.chance(Ratio(1, 2)) {
            let transfer = FaultKind::ALL.len() - 1;
            params.faults.weights[transfer] = rng.between(1, 4) as u32;
        }
        // Membership changes, drawn last for the same reason (own stream for their events).
        if rng.chance(Ratio(1, 2)) {
            let interval_us_min = rng.between(200_000, 2_000_000);
            params.membership = MembershipParams {
                spares: rng.between(1, 2) as usize,
                interval_us_min,
                interval_us_max: interval_us_min + rng.between(0, 3_000_000),
            };
        }
        params
    }

    /// Every simulated node: the cluster's, then the spares.
    pub fn node_count(&self) -> usize {
        self.nodes + self.membership.spares
    }

    /// The core configuration of node `id` in its `incarnation`-th life.
    pub fn core_config(&self, id: NodeId, seed: u64, incarnation: u32) -> Config {
        Config {
            id,
            voters: (1..=self.nodes as u64).map(NodeId).collect(),
            // A restarted node draws fresh timeouts, as a real process would.
            rng_seed: seed ^ u64::from(incarnation).wrapping_mul(0xD6E8_FEB8_6659_FD93),
            ..self.core.clone()
        }
    }
}

/// The clock skew leases are safe within: tick periods within a factor of 1.5 of each other
/// (`Config::lease_ticks`), that is ±20 % of nominal.
pub const LEASE_SKEW_PERCENT_MAX: u32 = 20;

fn swarm_core(rng: &mut SimRng) -> Config {
    Config {
        // Small batches make many AppendEntries per entry: more reordering, more chances for
        // a stale request to meet a longer log.
        max_append_entries: *rng.pick(&[1, 2, 3, 8, 64, 1024]),
        max_append_bytes: *rng.pick(&[48, 256, 1 << 20]),
        max_inflight_appends: *rng.pick(&[1, 2, 4, 8]),
        pre_vote: rng.chance(Ratio(3, 4)),
        check_quorum: rng.chance(Ratio(3, 4)),
        // No cache at all, or a few entries' worth, makes every lagging follower a catch-up
        // from storage, and forgetting runs on almost every step.
        log_cache_bytes: *rng.pick(&[0, 100, 2_000, 4 << 20]),
        ..Config::new(NodeId(1), vec![NodeId(1)])
    }
}

fn swarm_net(rng: &mut SimRng) -> NetParams {
    let latency_us_min = rng.between(100, 2_000);
    let reorder = maybe_percent(rng, Ratio(1, 2), 20);
    let spread_us_max = *rng.pick(&[2_000, 10_000, 40_000]);
    NetParams {
        latency_us_min,
        latency_us_max: latency_us_min + rng.between(0, spread_us_max),
        loss: maybe_percent(rng, Ratio(1, 3), 30),
        duplicate: maybe_percent(rng, Ratio(1, 2), 50),
        reorder,
        reorder_delay_us_max: *rng.pick(&[20_000, 200_000, 1_000_000]),
    }
}

fn swarm_disk(rng: &mut SimRng) -> DiskParams {
    let fsync_us_min = rng.between(20, 1_000);
    let spread_us_max = *rng.pick(&[1_000, 5_000, 20_000]);
    DiskParams {
        fsync_us_min,
        fsync_us_max: fsync_us_min + rng.between(0, spread_us_max),
        slow_fsync: if rng.chance(Ratio(1, 2)) {
            Ratio::NEVER
        } else {
            Ratio(1, rng.between(5, 50) as u32)
        },
        slow_fsync_us_max: rng.between(50_000, 300_000),
        unsynced_survive: Ratio(1, 2),
        torn: Ratio(1, 2),
        segment_bytes: SEGMENT_BYTES_DEFAULT,
    }
}

fn swarm_faults(rng: &mut SimRng) -> FaultParams {
    let mut weights = [0; FaultKind::ALL.len()];
    // All but the last, `Transfer`, whose weight `Params::swarm` draws last.
    for weight in &mut weights[..FaultKind::ALL.len() - 1] {
        if rng.chance(Ratio(1, 2)) {
            *weight = rng.between(1, 4) as u32;
        }
    }
    let interval_us_min = rng.between(100_000, 1_000_000);
    // A quarter of the seeds restart crashed nodes almost at once, while messages sent
    // before the crash are still in flight: the regime where lost unsynced state bites.
    let (down_us_min, down_us_max) = if rng.chance(Ratio(1, 4)) {
        (1_000, 20_000)
    } else {
        (20_000, rng.between(200_000, 3_000_000))
    };
    FaultParams {
        interval_us_min,
        interval_us_max: interval_us_min + rng.between(0, 3_000_000),
        weights,
        down_us_min,
        down_us_max,
        crash_unsynced: *rng.pick(&[Ratio::NEVER, Ratio(1, 1000), Ratio(1, 100), Ratio(1, 20)]),
        crash_new_leader: *rng.pick(&[Ratio::NEVER, Ratio::NEVER, Ratio(1, 10), Ratio(1, 3)]),
        new_leader_crash_us_max: rng.between(1_000, 60_000),
        pause_us_max: rng.between(10_000, 2_000_000),
        partition_us_max: rng.between(100_000, 5_000_000),
    }
}

/// No fault with probability `none`, else a uniform 1..=`max_percent` percent.
fn maybe_percent(rng: &mut SimRng, none: Ratio, max_percent: u64) -> Ratio {
    if rng.chance(none) {
        Ratio::NEVER
    } else {
        Ratio::percent(rng.between(1, max_percent) as u32)
    }
}
