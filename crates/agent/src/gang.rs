//! Pure helpers for the control plane's side of the agent protocol: turning a placed gang into
//! per-node assignments, and the per-rank statuses the agents report back into one outcome for
//! the gang. No I/O; the server's agent backend calls these (see `docs/agent.md`).

use std::collections::BTreeMap;

use crate::protocol::{Assignment, ProcessState, ProcessStatus, RestartPolicy};

/// Free accelerators of one node, as the control plane knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlot {
    /// Node id (from registration).
    pub node_id: String,
    /// Address other nodes reach it at (`MASTER_ADDR` if it holds rank 0).
    pub address: String,
    /// Accelerator indices free for this gang on this node, in the order to use them.
    pub accelerators: Vec<u32>,
}

/// One attempt of a gang: what every rank runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GangSpec {
    /// Job id.
    pub job_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Ranks (one per accelerator).
    pub world_size: u32,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Checkpoint directory (the same path on every node).
    pub checkpoint_dir: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Port of rank 0 (see [`master_port`]).
    pub master_port: u16,
    /// Restart policy of each process (`Never` for training ranks).
    pub restart: RestartPolicy,
    /// Grace period between SIGTERM and SIGKILL.
    pub stop_grace_ms: u64,
}

/// Why a gang cannot be placed on the given nodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Fewer free accelerators than ranks.
    #[error("{world_size} ranks need {world_size} accelerators; the nodes offer {free}")]
    TooFewAccelerators {
        /// Ranks.
        world_size: u32,
        /// Free accelerators offered.
        free: usize,
    },
    /// A gang of no ranks.
    #[error("a gang needs at least one rank")]
    Empty,
    /// A node id appears twice.
    #[error("node {0} is offered twice")]
    DuplicateNode(String),
}

/// The assignment id of `rank` in `attempt` of `job_id`: `{job}/attempt-{n}/rank-{r}`.
pub fn assignment_id(job_id: &str, attempt: u32, rank: u32) -> String {
    format!("{job_id}/attempt-{attempt}/rank-{rank}")
}

/// The inverse of [`assignment_id`].
pub fn parse_assignment_id(id: &str) -> Option<(&str, u32, u32)> {
    let (rest, rank) = id.rsplit_once("/rank-")?;
    let (job, attempt) = rest.rsplit_once("/attempt-")?;
    Some((job, attempt.parse().ok()?, rank.parse().ok()?))
}

/// A port for rank 0 of `attempt` of `job_id` in `[low, high]`: a function of the job and the
/// attempt, different for consecutive attempts of one job, so a new attempt never waits for the
/// old one's socket.
///
/// # Panics
/// If `low > high`.
pub fn master_port(job_id: &str, attempt: u32, low: u16, high: u16) -> u16 {
    assert!(low <= high, "empty port range {low}..={high}");
    let span = u64::from(high - low) + 1;
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in job_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    let offset = (h % span + u64::from(attempt)) % span;
    low + offset as u16
}

/// Ranks in order over the nodes in the order given, filling each node's free accelerators
/// before the next (so ranks that talk most — neighbours — share a node). Returns each node's
/// assignments; nodes that get no rank are left out.
pub fn place(
    spec: &GangSpec,
    nodes: &[NodeSlot],
) -> Result<BTreeMap<String, Vec<Assignment>>, PlaceError> {
    if spec.world_size == 0 {
        return Err(PlaceError::Empty);
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in nodes {
        if !seen.insert(n.node_id.as_str()) {
            return Err(PlaceError::DuplicateNode(n.node_id.clone()));
        }
    }
    let free: usize = nodes.iter().map(|n| n.accelerators.len()).sum();
    if free < spec.world_size as usize {
        return Err(PlaceError::TooFewAccelerators {
            world_size: spec.world_size,
            free,
        });
    }
    let slots: Vec<(&NodeSlot, u32, u32)> = nodes
        .iter()
        .flat_map(|n| {
            n.accelerators
                .iter()
                .enumerate()
                .map(move |(local, acc)| (n, local as u32, *acc))
        })
        .take(spec.world_size as usize)
        .collect();
    let master_addr = slots[0].0.address.clone();
    let mut out: BTreeMap<String, Vec<Assignment>> = BTreeMap::new();
    for (rank, (node, local_rank, acc)) in slots.into_iter().enumerate() {
        let rank = rank as u32;
        out.entry(node.node_id.clone())
            .or_default()
            .push(Assignment {
                id: assignment_id(&spec.job_id, spec.attempt, rank),
                job_id: spec.job_id.clone(),
                attempt: spec.attempt,
                rank,
                world_size: spec.world_size,
                local_rank,
                master_addr: master_addr.clone(),
                master_port: spec.master_port,
                command: spec.command.clone(),
                env: spec.env.clone(),
                accelerators: vec![acc],
                checkpoint_dir: spec.checkpoint_dir.clone(),
                working_dir: spec.working_dir.clone(),
                restart: spec.restart,
                stop_grace_ms: spec.stop_grace_ms,
            });
    }
    Ok(out)
}

/// Where an attempt of a gang stands, from its ranks' reported statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GangOutcome {
    /// Not every rank has reported yet, or some still run.
    Running,
    /// Every rank exited 0.
    Succeeded,
    /// A rank failed (the lowest such rank): the gang must be stopped and placed again.
    Failed {
        /// The rank.
        rank: u32,
        /// What happened, for the job's events.
        reason: String,
        /// Whether the job is to blame (and a retry is spent): false when the rank's end is
        /// unknown because it ended while its agent was away (an agent restarted in place
        /// adopts its processes, and learns their exit codes only from their recorders:
        /// [`crate::exit_record`]).
        job_at_fault: bool,
    },
}

/// The outcome of attempt `attempt` of `job_id` with `world_size` ranks, from statuses reported
/// by any nodes (statuses of other jobs or attempts are ignored). A rank the agent stopped (on
/// the control plane's order) is not a failure.
pub fn outcome(
    job_id: &str,
    attempt: u32,
    world_size: u32,
    statuses: &[ProcessStatus],
) -> GangOutcome {
    let mut by_rank: BTreeMap<u32, &ProcessState> = BTreeMap::new();
    for s in statuses {
        if let Some((job, a, rank)) = parse_assignment_id(&s.assignment_id)
            && job == job_id
            && a == attempt
            && rank < world_size
        {
            by_rank.insert(rank, &s.state);
        }
    }
    for (rank, state) in &by_rank {
        let (reason, job_at_fault) = match state {
            ProcessState::Exited(e) if !e.success() && !e.stopped_by_agent => {
                match (e.code, e.signal) {
                    (Some(c), _) => (format!("rank {rank} exited with code {c}"), true),
                    (None, Some(s)) => (format!("rank {rank} was killed by signal {s}"), true),
                    (None, None) => (
                        format!(
                            "rank {rank} ended while its agent was away or restarting (exit code unknown)"
                        ),
                        false,
                    ),
                }
            }
            ProcessState::FailedToStart { error } => {
                (format!("rank {rank} could not start: {error}"), true)
            }
            _ => continue,
        };
        return GangOutcome::Failed {
            rank: *rank,
            reason,
            job_at_fault,
        };
    }
    let all_done = by_rank.len() == world_size as usize
        && by_rank
            .values()
            .all(|s| matches!(s, ProcessState::Exited(e) if e.success()));
    if all_done {
        GangOutcome::Succeeded
    } else {
        GangOutcome::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ExitInfo;
    use proptest::prelude::*;

    fn spec(world_size: u32) -> GangSpec {
        GangSpec {
            job_id: "job-7".into(),
            attempt: 2,
            world_size,
            command: vec!["switchyard-workload".into()],
            env: BTreeMap::new(),
            checkpoint_dir: Some("/ckpt/job-7".into()),
            working_dir: None,
            master_port: 29555,
            restart: RestartPolicy::Never,
            stop_grace_ms: 5000,
        }
    }

    fn node(id: &str, accs: &[u32]) -> NodeSlot {
        NodeSlot {
            node_id: id.into(),
            address: format!("10.0.0.{}", id.len()),
            accelerators: accs.to_vec(),
        }
    }

    fn exited(code: i32, by_agent: bool) -> ProcessState {
        ProcessState::Exited(ExitInfo {
            code: Some(code),
            signal: None,
            stopped_by_agent: by_agent,
        })
    }

    fn st(rank: u32, state: ProcessState) -> ProcessStatus {
        ProcessStatus {
            assignment_id: assignment_id("job-7", 2, rank),
            state,
            restarts: 0,
            last_exit: None,
        }
    }

    #[test]
    fn ids_round_trip() {
        let id = assignment_id("a/b", 3, 17);
        assert_eq!(id, "a/b/attempt-3/rank-17");
        assert_eq!(parse_assignment_id(&id), Some(("a/b", 3, 17)));
        assert_eq!(parse_assignment_id("svc/replica-0"), None);
    }

    #[test]
    fn ranks_fill_nodes_in_order_and_rank_0_is_master() {
        let placed = place(&spec(3), &[node("a", &[0, 1]), node("bb", &[4, 5])]).expect("fits");
        let a = &placed["a"];
        let b = &placed["bb"];
        assert_eq!(a.iter().map(|x| x.rank).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].rank, b[0].local_rank, b[0].accelerators.clone()),
            (2, 0, vec![4])
        );
        assert!(
            placed
                .values()
                .flatten()
                .all(|x| x.master_addr == "10.0.0.1")
        );
        assert_eq!(a[1].id, "job-7/attempt-2/rank-1");
    }

    #[test]
    fn placement_errors() {
        assert_eq!(
            place(&spec(3), &[node("a", &[0, 1])]),
            Err(PlaceError::TooFewAccelerators {
                world_size: 3,
                free: 2
            })
        );
        assert_eq!(place(&spec(0), &[node("a", &[0])]), Err(PlaceError::Empty));
        assert_eq!(
            place(&spec(1), &[node("a", &[0]), node("a", &[1])]),
            Err(PlaceError::DuplicateNode("a".into()))
        );
    }

    #[test]
    fn ports_stay_in_range_and_change_between_attempts() {
        for attempt in 1..50 {
            let p = master_port("job-7", attempt, 29500, 29599);
            assert!((29500..=29599).contains(&p));
            assert_ne!(p, master_port("job-7", attempt + 1, 29500, 29599));
        }
        assert_eq!(master_port("x", 1, 4000, 4000), 4000);
    }

    #[test]
    fn outcomes() {
        let running = ProcessState::Running { pid: 1 };
        assert_eq!(outcome("job-7", 2, 2, &[]), GangOutcome::Running);
        assert_eq!(
            outcome(
                "job-7",
                2,
                2,
                &[st(0, exited(0, false)), st(1, running.clone())]
            ),
            GangOutcome::Running
        );
        assert_eq!(
            outcome(
                "job-7",
                2,
                2,
                &[st(0, exited(0, false)), st(1, exited(0, false))]
            ),
            GangOutcome::Succeeded
        );
        assert_eq!(
            outcome("job-7", 2, 2, &[st(0, running), st(1, exited(3, false))]),
            GangOutcome::Failed {
                rank: 1,
                reason: "rank 1 exited with code 3".into(),
                job_at_fault: true,
            }
        );
        // An end the agent could not see (it restarted meanwhile) is nobody's fault.
        let unknown = ProcessState::Exited(ExitInfo {
            code: None,
            signal: None,
            stopped_by_agent: false,
        });
        assert!(matches!(
            outcome("job-7", 2, 2, &[st(0, unknown)]),
            GangOutcome::Failed {
                rank: 0,
                job_at_fault: false,
                ..
            }
        ));
        // Stopped on the control plane's order: not a failure.
        assert_eq!(
            outcome("job-7", 2, 2, &[st(0, exited(1, true))]),
            GangOutcome::Running
        );
        let no_start = ProcessState::FailedToStart {
            error: "no such file".into(),
        };
        assert!(matches!(
            outcome("job-7", 2, 2, &[st(0, no_start)]),
            GangOutcome::Failed { rank: 0, .. }
        ));
        // Another attempt's statuses do not count.
        let old = ProcessStatus {
            assignment_id: assignment_id("job-7", 1, 0),
            state: exited(1, false),
            restarts: 0,
            last_exit: None,
        };
        assert_eq!(outcome("job-7", 2, 1, &[old]), GangOutcome::Running);
    }

    proptest! {
        #[test]
        fn every_rank_placed_once_on_a_distinct_accelerator(
            caps in prop::collection::vec(0usize..5, 1..6),
            world in 1u32..20,
        ) {
            let nodes: Vec<NodeSlot> = caps
                .iter()
                .enumerate()
                .map(|(i, c)| node(&format!("n{i}"), &(0..*c as u32).collect::<Vec<_>>()))
                .collect();
            let total: usize = caps.iter().sum();
            match place(&spec(world), &nodes) {
                Err(PlaceError::TooFewAccelerators { .. }) => prop_assert!(total < world as usize),
                Err(e) => prop_assert!(false, "unexpected {e}"),
                Ok(placed) => {
                    let mut ranks: Vec<u32> = placed.values().flatten().map(|a| a.rank).collect();
                    ranks.sort_unstable();
                    prop_assert_eq!(ranks, (0..world).collect::<Vec<_>>());
                    for (node_id, list) in &placed {
                        let mut accs: Vec<u32> = list.iter().flat_map(|a| a.accelerators.clone()).collect();
                        let n = accs.len();
                        accs.dedup();
                        prop_assert_eq!(accs.len(), n, "accelerator reused on {}", node_id);
                        let locals: Vec<u32> = list.iter().map(|a| a.local_rank).collect();
                        prop_assert_eq!(locals, (0..list.len() as u32).collect::<Vec<_>>());
                    }
                    let master = &placed.values().flatten().find(|a| a.rank == 0).map(|a| a.master_addr.clone());
                    prop_assert!(placed.values().flatten().all(|a| Some(&a.master_addr) == master.as_ref()));
                }
            }
        }
    }
}
