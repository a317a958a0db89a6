//! Level-triggered reconciliation: compare what the control plane wants on this node with what
//! runs, and say what to do. Pure: no processes, no clock (the time comes in as an argument), so
//! it is tested by enumeration and by properties.
//!
//! The rules, for each assignment id:
//! - desired, not running → start it;
//! - running, not desired (a stray: cancelled, preempted, or left from before a restart) → stop it;
//! - running with a spec other than the desired one → stop it (it starts again next pass);
//! - stopping → wait for it to be gone (never start a second copy beside it);
//! - exited and still desired → restart it only if its policy says so, after a back-off;
//!   otherwise leave it exited: the exit is reported, and the control plane decides (a failed
//!   rank fails the gang, which comes back as a new attempt with new ids);
//! - exited, not desired and its exit reported → forget it.
//!
//! And one rule across assignments: a start waits while a running or stopping process holds
//! one of its accelerators, so a new attempt's rank never shares a GPU with the old attempt's
//! rank during its grace period (it starts on a later pass, once the old one is gone).

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{Assignment, RestartPolicy};

/// Where an observed process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running.
    Running,
    /// Asked to stop, not gone yet.
    Stopping,
    /// Gone (or never started).
    Exited {
        /// Exit code 0.
        success: bool,
        /// When, in milliseconds (same clock as `now_ms`).
        at_ms: u64,
        /// Whether the control plane has been told.
        reported: bool,
    },
}

/// One assignment the supervisor knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The spec it was started with.
    pub assignment: Assignment,
    /// Where it is.
    pub phase: Phase,
    /// Restarts under its restart policy since it last ran for [`BACKOFF_RESET_MS`]: how
    /// far up the back-off it is.
    pub backoff_step: u32,
}

/// Why a process is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The control plane no longer wants it (cancel, preemption, gang restart, stray).
    NotDesired,
    /// The control plane wants it with another spec.
    SpecChanged,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGTERM its process group, SIGKILL after its grace period.
    Stop {
        /// Assignment id.
        id: String,
        /// Why.
        reason: StopReason,
    },
    /// Drop the record of an exited, reported, undesired process.
    Forget {
        /// Assignment id.
        id: String,
    },
    /// Start it (replacing any exited record with the same id).
    Start {
        /// What to run.
        assignment: Assignment,
        /// Whether this is a restart under the restart policy (counts towards `restarts`).
        restart: bool,
    },
}

/// Wait before a restart `step` restarts into a crash loop: 1 s, doubling, at most 60 s.
pub fn backoff_ms(step: u32) -> u64 {
    1000u64.saturating_mul(1u64 << step.min(6)).min(60_000)
}

/// A process that ran this long before it exited was healthy: its next restart waits the
/// shortest back-off again (as Kubernetes resets a container's after 10 minutes), instead of
/// the 60 s that crashes days or weeks apart would otherwise add up to.
pub const BACKOFF_RESET_MS: u64 = 10 * 60_000;

/// The actions that move `observed` towards `desired`: stops first (they free ports and
/// accelerators), then forgets, then starts; each group sorted by id. If `desired` names an id
/// twice, the first wins.
pub fn reconcile(desired: &[Assignment], observed: &[Observed], now_ms: u64) -> Vec<Action> {
    reconcile_keeping(desired, &[], observed, now_ms)
}

/// [`reconcile`], leaving the processes `keep` names (and not desired) as they are: not
/// stopped while they run, not forgotten once exited (their exit is still to be judged).
pub fn reconcile_keeping(
    desired: &[Assignment],
    keep: &[String],
    observed: &[Observed],
    now_ms: u64,
) -> Vec<Action> {
    let keep: BTreeSet<&str> = keep.iter().map(String::as_str).collect();
    let mut want: BTreeMap<&str, &Assignment> = BTreeMap::new();
    for a in desired {
        want.entry(a.id.as_str()).or_insert(a);
    }
    let have: BTreeMap<&str, &Observed> = observed
        .iter()
        .map(|o| (o.assignment.id.as_str(), o))
        .collect();

    let mut stops = Vec::new();
    let mut forgets = Vec::new();
    let mut starts = Vec::new();
    let ids: BTreeSet<&str> = want.keys().chain(have.keys()).copied().collect();
    for id in ids {
        match (want.get(id), have.get(id)) {
            (Some(a), None) => starts.push(Action::Start {
                assignment: (*a).clone(),
                restart: false,
            }),
            (None, Some(_)) if keep.contains(id) => {}
            (None, Some(o)) => match o.phase {
                Phase::Running => stops.push(Action::Stop {
                    id: id.to_string(),
                    reason: StopReason::NotDesired,
                }),
                Phase::Stopping => {}
                Phase::Exited { reported, .. } => {
                    if reported {
                        forgets.push(Action::Forget { id: id.to_string() });
                    }
                }
            },
            (Some(a), Some(o)) => match o.phase {
                Phase::Running if **a != o.assignment => stops.push(Action::Stop {
                    id: id.to_string(),
                    reason: StopReason::SpecChanged,
                }),
                Phase::Running | Phase::Stopping => {}
                Phase::Exited { .. } if **a != o.assignment => starts.push(Action::Start {
                    assignment: (*a).clone(),
                    restart: false,
                }),
                Phase::Exited { success, at_ms, .. } => {
                    let wanted = match a.restart {
                        RestartPolicy::Never => false,
                        RestartPolicy::OnFailure => !success,
                        RestartPolicy::Always => true,
                    };
                    if wanted && now_ms >= at_ms.saturating_add(backoff_ms(o.backoff_step)) {
                        starts.push(Action::Start {
                            assignment: (*a).clone(),
                            restart: true,
                        });
                    }
                }
            },
            (None, None) => {}
        }
    }
    let held: BTreeSet<u32> = observed
        .iter()
        .filter(|o| matches!(o.phase, Phase::Running | Phase::Stopping))
        .flat_map(|o| o.assignment.accelerators.iter().copied())
        .collect();
    starts.retain(|s| match s {
        Action::Start { assignment, .. } => {
            !assignment.accelerators.iter().any(|a| held.contains(a))
        }
        _ => true,
    });
    stops.extend(forgets);
    stops.extend(starts);
    stops
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn a(id: &str, restart: RestartPolicy) -> Assignment {
        Assignment {
            id: id.into(),
            job_id: "j".into(),
            attempt: 1,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: 1,
            command: vec!["true".into()],
            env: BTreeMap::new(),
            accelerators: vec![],
            checkpoint_dir: None,
            working_dir: None,
            restart,
            stop_grace_ms: 1000,
        }
    }

    #[test]
    fn a_start_waits_for_the_accelerators_an_old_process_still_holds() {
        let on = |id: &str, accs: &[u32]| {
            let mut x = a(id, RestartPolicy::Never);
            x.accelerators = accs.to_vec();
            x
        };
        // Attempt 2 replaces attempt 1 on the same GPUs: the old rank is stopped first, and
        // the new one starts only once the old one is gone.
        let old = Observed {
            assignment: on("j/attempt-1/rank-0", &[0, 1]),
            phase: Phase::Running,
            backoff_step: 0,
        };
        let new = on("j/attempt-2/rank-0", &[1, 2]);
        let elsewhere = on("j/attempt-2/rank-1", &[3]);
        let acts = reconcile(
            &[new.clone(), elsewhere.clone()],
            std::slice::from_ref(&old),
            0,
        );
        assert_eq!(
            acts,
            [
                Action::Stop {
                    id: "j/attempt-1/rank-0".into(),
                    reason: StopReason::NotDesired
                },
                Action::Start {
                    assignment: elsewhere.clone(),
                    restart: false
                }
            ]
        );
        let stopping = Observed {
            phase: Phase::Stopping,
            ..old
        };
        assert_eq!(
            reconcile(std::slice::from_ref(&new), &[stopping], 0),
            [],
            "still in its grace period"
        );
        assert_eq!(
            reconcile(std::slice::from_ref(&new), &[], 0),
            [Action::Start {
                assignment: new,
                restart: false
            }]
        );
    }

    fn obs(id: &str, phase: Phase) -> Observed {
        Observed {
            assignment: a(id, RestartPolicy::Never),
            phase,
            backoff_step: 0,
        }
    }

    fn exited(success: bool, at_ms: u64, reported: bool) -> Phase {
        Phase::Exited {
            success,
            at_ms,
            reported,
        }
    }

    /// What the control plane says to keep is neither stopped, started nor forgotten; what it
    /// wants, it still gets.
    #[test]
    fn kept_processes_are_left_as_they_are() {
        let observed = vec![
            obs("kept", Phase::Running),
            obs("kept-ended", exited(false, 5, true)),
            obs("stray", Phase::Running),
        ];
        let keep = vec!["kept".to_owned(), "kept-ended".into(), "absent".into()];
        let desired = vec![a("new", RestartPolicy::Never)];
        assert_eq!(
            reconcile_keeping(&desired, &keep, &observed, 10),
            vec![
                Action::Stop {
                    id: "stray".into(),
                    reason: StopReason::NotDesired
                },
                Action::Start {
                    assignment: a("new", RestartPolicy::Never),
                    restart: false
                },
            ]
        );
        // Desired wins over kept: a changed spec is still stopped.
        let mut changed = a("kept", RestartPolicy::Never);
        changed.command = vec!["false".into()];
        assert!(matches!(
            reconcile_keeping(&[changed], &keep, &observed[..1], 10).as_slice(),
            [Action::Stop {
                reason: StopReason::SpecChanged,
                ..
            }]
        ));
    }

    #[test]
    fn starts_missing_and_stops_strays_stops_first() {
        let desired = vec![a("b", RestartPolicy::Never)];
        let observed = vec![obs("a", Phase::Running)];
        let actions = reconcile(&desired, &observed, 0);
        assert_eq!(
            actions,
            vec![
                Action::Stop {
                    id: "a".into(),
                    reason: StopReason::NotDesired
                },
                Action::Start {
                    assignment: a("b", RestartPolicy::Never),
                    restart: false
                },
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_converged() {
        let desired = vec![a("a", RestartPolicy::Never)];
        let observed = vec![obs("a", Phase::Running)];
        assert!(reconcile(&desired, &observed, 0).is_empty());
    }

    #[test]
    fn a_changed_spec_is_stopped_then_started() {
        let mut changed = a("a", RestartPolicy::Never);
        changed.command = vec!["false".into()];
        let observed = vec![obs("a", Phase::Running)];
        assert_eq!(
            reconcile(std::slice::from_ref(&changed), &observed, 0),
            vec![Action::Stop {
                id: "a".into(),
                reason: StopReason::SpecChanged
            }]
        );
        let gone = vec![obs("a", exited(false, 0, true))];
        assert_eq!(
            reconcile(std::slice::from_ref(&changed), &gone, 0),
            vec![Action::Start {
                assignment: changed,
                restart: false
            }]
        );
    }

    #[test]
    fn exited_ranks_stay_down_but_replicas_come_back_after_backoff() {
        let rank = a("rank", RestartPolicy::Never);
        let failed = vec![obs("rank", exited(false, 100, false))];
        assert!(reconcile(std::slice::from_ref(&rank), &failed, 1_000_000).is_empty());

        let replica = a("rank", RestartPolicy::Always);
        let mut o = obs("rank", exited(true, 100, true));
        o.assignment = replica.clone();
        o.backoff_step = 2; // back-off 4 s
        assert!(
            reconcile(
                std::slice::from_ref(&replica),
                std::slice::from_ref(&o),
                4_099
            )
            .is_empty()
        );
        assert_eq!(
            reconcile(
                std::slice::from_ref(&replica),
                std::slice::from_ref(&o),
                4_100
            ),
            vec![Action::Start {
                assignment: replica.clone(),
                restart: true
            }]
        );

        let on_failure = a("rank", RestartPolicy::OnFailure);
        let mut ok = obs("rank", exited(true, 0, true));
        ok.assignment = on_failure.clone();
        assert!(
            reconcile(
                std::slice::from_ref(&on_failure),
                std::slice::from_ref(&ok),
                1_000_000
            )
            .is_empty()
        );
    }

    #[test]
    fn exits_are_forgotten_only_once_reported() {
        let unreported = vec![obs("a", exited(false, 0, false))];
        assert!(reconcile(&[], &unreported, 0).is_empty());
        let reported = vec![obs("a", exited(false, 0, true))];
        assert_eq!(
            reconcile(&[], &reported, 0),
            vec![Action::Forget { id: "a".into() }]
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(1), 2000);
        assert_eq!(backoff_ms(5), 32_000);
        assert_eq!(backoff_ms(6), 60_000);
        assert_eq!(backoff_ms(u32::MAX), 60_000);
    }

    // ---- properties ---------------------------------------------------------------------

    fn arb_phase() -> impl Strategy<Value = Phase> {
        prop_oneof![
            Just(Phase::Running),
            Just(Phase::Stopping),
            (any::<bool>(), 0u64..10_000, any::<bool>()).prop_map(|(s, at, r)| exited(s, at, r)),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = RestartPolicy> {
        prop_oneof![
            Just(RestartPolicy::Never),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::Always)
        ]
    }

    /// Up to 8 ids; each maybe desired (with a policy and maybe a changed spec), maybe observed.
    fn arb_world() -> impl Strategy<Value = (Vec<Assignment>, Vec<Observed>, u64)> {
        prop::collection::vec(
            (
                prop::option::of((arb_policy(), any::<bool>())),
                prop::option::of((arb_phase(), 0u32..5)),
            ),
            0..8,
        )
        .prop_flat_map(|slots| {
            let mut desired = Vec::new();
            let mut observed = Vec::new();
            for (i, (want, have)) in slots.into_iter().enumerate() {
                let id = format!("id-{i}");
                let spec = want.map(|(policy, _)| a(&id, policy));
                if let Some((policy, changed)) = want {
                    let mut d = a(&id, policy);
                    if changed {
                        d.command = vec!["changed".into()];
                    }
                    desired.push(d);
                }
                if let Some((phase, backoff_step)) = have {
                    observed.push(Observed {
                        assignment: spec.unwrap_or_else(|| a(&id, RestartPolicy::Never)),
                        phase,
                        backoff_step,
                    });
                }
            }
            (Just(desired), Just(observed), 0u64..100_000)
        })
    }

    /// Applies actions the way the supervisor would, with every stop completing and nothing
    /// exiting on its own.
    fn apply(observed: &[Observed], actions: &[Action], now: u64) -> Vec<Observed> {
        let mut map: BTreeMap<String, Observed> = observed
            .iter()
            .map(|o| (o.assignment.id.clone(), o.clone()))
            .collect();
        for action in actions {
            match action {
                Action::Stop { id, .. } => {
                    if let Some(o) = map.get_mut(id) {
                        o.phase = exited(false, now, true);
                    }
                }
                Action::Forget { id } => {
                    map.remove(id);
                }
                Action::Start {
                    assignment,
                    restart,
                } => {
                    let step = map.get(&assignment.id).map_or(0, |o| o.backoff_step);
                    map.insert(
                        assignment.id.clone(),
                        Observed {
                            assignment: assignment.clone(),
                            phase: Phase::Running,
                            backoff_step: step + u32::from(*restart),
                        },
                    );
                }
            }
        }
        // Stopping processes finish stopping.
        for o in map.values_mut() {
            if o.phase == Phase::Stopping {
                o.phase = exited(false, now, true);
            }
        }
        map.into_values().collect()
    }

    proptest! {
        #[test]
        fn never_starts_beside_a_live_process((desired, observed, now) in arb_world()) {
            let actions = reconcile(&desired, &observed, now);
            for act in &actions {
                if let Action::Start { assignment, .. } = act {
                    let live = observed.iter().any(|o| o.assignment.id == assignment.id
                        && matches!(o.phase, Phase::Running | Phase::Stopping));
                    prop_assert!(!live, "started {} beside a live copy", assignment.id);
                }
            }
        }

        #[test]
        fn every_stray_is_stopped_and_every_missing_one_started((desired, observed, now) in arb_world()) {
            let actions = reconcile(&desired, &observed, now);
            for o in &observed {
                let wanted = desired.iter().any(|d| d.id == o.assignment.id);
                if !wanted && o.phase == Phase::Running {
                    let stopped = actions.iter().any(|a| matches!(a, Action::Stop { id, .. } if *id == o.assignment.id));
                    prop_assert!(stopped, "stray {} not stopped", o.assignment.id);
                }
            }
            for d in &desired {
                if !observed.iter().any(|o| o.assignment.id == d.id) {
                    let n = actions.iter().filter(|a| matches!(a, Action::Start { assignment, .. } if assignment.id == d.id)).count();
                    prop_assert_eq!(n, 1);
                }
            }
            // Nothing undesired is ever started.
            for act in &actions {
                if let Action::Start { assignment, .. } = act {
                    prop_assert!(desired.iter().any(|d| d == assignment));
                }
            }
        }

        #[test]
        fn stops_come_before_starts((desired, observed, now) in arb_world()) {
            let actions = reconcile(&desired, &observed, now);
            let first_start = actions.iter().position(|a| matches!(a, Action::Start { .. }));
            let last_stop = actions.iter().rposition(|a| matches!(a, Action::Stop { .. }));
            if let (Some(s), Some(t)) = (first_start, last_stop) {
                prop_assert!(t < s);
            }
        }

        #[test]
        fn converges_to_desired_within_three_passes((desired, observed, now) in arb_world()) {
            // With stops completing and nothing crashing, a few passes reach a fixed point where
            // exactly the desired specs run (or sit exited under a policy that keeps them down).
            let mut state = observed;
            for _ in 0..3 {
                let actions = reconcile(&desired, &state, now);
                state = apply(&state, &actions, now);
            }
            for o in &state {
                let d = desired.iter().find(|d| d.id == o.assignment.id);
                match d {
                    None => prop_assert!(!matches!(o.phase, Phase::Running | Phase::Stopping), "stray {} still live", o.assignment.id),
                    Some(d) => {
                        if o.phase == Phase::Running {
                            prop_assert_eq!(&o.assignment, d);
                        }
                    }
                }
            }
            for d in &desired {
                prop_assert!(state.iter().any(|o| o.assignment.id == d.id), "{} never started", d.id);
            }
            // And a further pass at the same instant changes nothing that runs.
            let again = reconcile(&desired, &state, now);
            prop_assert!(again.iter().all(|a| !matches!(a, Action::Stop { .. })), "{:?}", again);
        }
    }
}
