//! The scheduling loop: leader election through the store's lease, then passes of the
//! scheduler whose decisions are committed to the store before the backend acts on them.
//!
//! Every replica runs this loop; the one holding the lease schedules, the others try to take
//! the lease over each tick (it expires `lease_ttl` after the leader's last renewal). A new
//! leader rebuilds the scheduler from the store's active jobs. Any store error while leading
//! steps down: the next term starts again from what the store holds (nothing is half-known).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchyard_core::fleet::Fleet;
use switchyard_store::{AnyStore, JobRecord, JobState, Lease, StoreError, StoreRead, StoreWrite};
use tokio::sync::{Notify, watch};

use crate::api::SubmitRequest;
use crate::backend::{Backend, NodeShare, Observed};
use crate::engine::{Clock, Engine, JobExtras};
use crate::metrics::Metrics;

/// Timing of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Longest wait between passes (a submission on this replica wakes it sooner).
    pub tick: Duration,
    /// How long a lease lasts without renewal; a dead leader is replaced after this.
    pub lease_ttl: Duration,
    /// This replica's name in the lease (unique per process).
    pub holder: String,
    /// This replica's fleet as the lease records it ([`crate::fleet_fingerprint`]).
    pub fleet: String,
}

/// Whether a replica that saw a leader of another fleet may serve and lead again: no live
/// leader runs another fleet now, and `fleet` can run every active job in the store (a leader
/// of another fleet may have left jobs on clusters this one lacks).
async fn conflict_resolved(store: &AnyStore, fleet: &Fleet, ours: &str) -> bool {
    match other_fleet_leading(store, ours).await {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => return false,
    }
    let Ok(jobs) = store.active_jobs().await else {
        return false;
    };
    let stranded = unrunnable(fleet, &jobs);
    match stranded.first() {
        None => {
            tracing::info!("the scheduling leader's fleet is this replica's again");
            true
        }
        Some((first, _)) => {
            tracing::warn!(
                jobs = stranded.len(),
                %first,
                "no leader of another fleet now, but this fleet cannot run every active job; not leading"
            );
            false
        }
    }
}

/// The lease, when a live leader holds it with a fleet other than `ours`.
pub async fn other_fleet_leading(
    store: &impl StoreRead,
    ours: &str,
) -> Result<Option<switchyard_store::LeaderInfo>, StoreError> {
    let leader = store.current_leader().await?;
    let live = leader.expires_ms > now_ms() && !leader.holder.is_empty();
    Ok((live && !leader.fleet.is_empty() && leader.fleet != ours).then_some(leader))
}

/// Whether `lease` may still be acted on: it runs out more than a sixth of its time to live
/// from now. It was written to expire one time to live after the moment it was asked for, so a
/// store that answered late leaves less of it, and one that answered after it ran out leaves
/// none: another replica may hold the lease by now.
fn in_time(lease: &switchyard_store::Lease, ttl_ms: i64) -> bool {
    now_ms() + ttl_ms / 6 < lease.expires_ms
}

/// When to count `lease`, asked for at `now`, as renewed: then, or — when it is late ([`in_time`])
/// — a whole lease earlier, so that the next round renews it before any pass acts on it.
fn renewed_at(lease: &switchyard_store::Lease, now: i64, ttl_ms: i64) -> i64 {
    if in_time(lease, ttl_ms) {
        now
    } else {
        now - ttl_ms
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

struct Leading {
    lease: Lease,
    engine: Engine,
    renewed_ms: i64,
}

/// Renews `l`'s lease at `now`; `LostLease` when another replica holds it (a new term).
async fn renew(
    store: &AnyStore,
    cfg: &LoopConfig,
    l: &mut Leading,
    metrics: &Metrics,
    now: i64,
) -> Result<(), StoreError> {
    let ttl_ms = cfg.lease_ttl.as_millis() as i64;
    match store
        .acquire_lease(&cfg.holder, &cfg.fleet, now, ttl_ms)
        .await?
    {
        Some(lease) if lease.term == l.lease.term => {
            metrics
                .lease_expires_ms
                .store(lease.expires_ms, Ordering::Relaxed);
            l.lease = lease;
            l.renewed_ms = now;
            Ok(())
        }
        _ => Err(StoreError::LostLease),
    }
}

/// Runs until `shutdown` turns true; then gives the lease up.
pub async fn run(
    store: AnyStore,
    fleet: Arc<Fleet>,
    mut backend: Box<dyn Backend>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    cfg: LoopConfig,
) {
    let ttl_ms = cfg.lease_ttl.as_millis() as i64;
    let mut leading: Option<Leading> = None;
    // A store that stays out of reach is said once, then every so often, not every tick.
    let mut lease_trouble = RepeatedWarning::default();
    // After a failed rebuild, not before this: the lease is left for another replica a while.
    let mut rebuild_after_ms = i64::MIN;
    loop {
        // A whole tick at most; less when the backend foresees something sooner (a dry run's
        // end) while this replica leads.
        let wait = match backend.next_due_ms().filter(|_| leading.is_some()) {
            Some(due) => cfg.tick.min(Duration::from_millis(
                u64::try_from(due - now_ms()).unwrap_or(0),
            )),
            None => cfg.tick,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            metrics.leader.store(false, Ordering::Relaxed);
            metrics.lease_expires_ms.store(0, Ordering::Relaxed);
            // The backend stops before the lease is given up: the next leader must not find
            // this one's last round of Slurm commands still going. A backend may wait for its
            // own threads when dropped (Slurm's finishes its round first): not on a thread
            // that runs other tasks.
            if let Err(e) = tokio::task::spawn_blocking(move || drop(backend)).await {
                tracing::warn!(error = %e, "the backend did not stop cleanly");
            }
            if let Some(l) = leading.take()
                && let Err(e) = store.release_lease(&l.lease).await
            {
                tracing::warn!(error = %e, "could not release the scheduling lease");
            }
            return;
        }
        let now = now_ms();
        if leading.is_none() && metrics.fleet_conflict().is_some() {
            // This replica saw a leader of another fleet: leading now could reject for good
            // the jobs its own fleet cannot run. It waits until the leader runs its fleet, or
            // none leads and its fleet can run every active job.
            if !conflict_resolved(&store, &fleet, &cfg.fleet).await {
                continue;
            }
            metrics.set_fleet_conflict(None);
        }
        if leading.is_none() && now < rebuild_after_ms {
            continue;
        }
        if leading.is_none() {
            match store
                .acquire_lease(&cfg.holder, &cfg.fleet, now, ttl_ms)
                .await
            {
                Ok(Some(lease)) => match recover(&store, &fleet, now).await {
                    Ok((engine, nodes)) => {
                        lease_trouble.clear();
                        let term = lease.term;
                        let fresh = in_time(&lease, ttl_ms);
                        let renewed_ms = renewed_at(&lease, now, ttl_ms);
                        tracing::info!(term, holder = %cfg.holder, "took the scheduling lease");
                        backend.reset();
                        backend.nodes_on_record(&nodes);
                        backend.runs_on_record(&engine.recovering_runs());
                        metrics
                            .lease_expires_ms
                            .store(lease.expires_ms, Ordering::Relaxed);
                        metrics.leader.store(true, Ordering::Relaxed);
                        metrics.leader_terms.fetch_add(1, Ordering::Relaxed);
                        leading = Some(Leading {
                            lease,
                            engine,
                            renewed_ms,
                        });
                        if !fresh {
                            // The lease was written for a moment long past (the store or the
                            // rebuild was slow): it may have run out already. Renew it (or
                            // find it taken) before acting on it.
                            tracing::warn!(
                                term,
                                "taking the scheduling lease took too long; renewing it before acting"
                            );
                            continue;
                        }
                    }
                    Err(e) => {
                        // Not held while it cannot lead: another replica may rebuild.
                        tracing::warn!(error = %e, "could not rebuild the scheduler from the store; giving the lease up");
                        if let Err(e) = store.release_lease(&lease).await {
                            tracing::warn!(error = %e, "could not release the scheduling lease");
                        }
                        rebuild_after_ms = now_ms() + ttl_ms;
                    }
                },
                Ok(None) => {
                    lease_trouble.clear();
                    // A follower: a leader on another fleet (started since) would reject what
                    // this replica accepts, so it stops accepting submissions until they agree.
                    match other_fleet_leading(&store, &cfg.fleet).await {
                        Ok(Some(l)) => {
                            let why = format!(
                                "this replica runs fleet {}, and the scheduling leader ({}) runs \
                                 fleet {}: restart this replica with the leader's fleet file, \
                                 --agents and --checkpoint-dir",
                                cfg.fleet, l.holder, l.fleet
                            );
                            tracing::error!(conflict = %why, "refusing submissions and the lease");
                            metrics.set_fleet_conflict(Some(why));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::debug!(error = %e, "could not read the lease"),
                    }
                    continue;
                }
                Err(e) => {
                    let error = e.to_string();
                    if lease_trouble.due(&error, now) {
                        tracing::warn!(%error, "could not reach the store for the lease");
                    }
                    continue;
                }
            }
        }
        let Some(l) = leading.as_mut() else { continue };
        let result = async {
            if now - l.renewed_ms >= ttl_ms / 3 {
                renew(&store, &cfg, l, &metrics, now).await?;
                if !in_time(&l.lease, ttl_ms) {
                    // Renewed late: the lease may have run out before the write and another
                    // replica may hold it now. No pass on it; the next round renews again
                    // or steps down.
                    tracing::warn!(
                        "renewing the scheduling lease took too long; renewing again before acting"
                    );
                    l.renewed_ms = renewed_at(&l.lease, now, ttl_ms);
                    return Ok(());
                }
            }
            pass(&store, &cfg, l, backend.as_mut(), &metrics, now).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "stepping down as scheduling leader");
            leading = None;
            // Agents are no longer answered before the backend forgets the desired state: they
            // would be handed an empty set and stop everything.
            metrics.leader.store(false, Ordering::Relaxed);
            metrics.lease_expires_ms.store(0, Ordering::Relaxed);
            backend.reset();
            metrics.jobs_held.store(0, Ordering::Relaxed);
        }
    }
}

/// A fresh scheduler holding every active job of the store, in submission order.
async fn recover(
    store: &AnyStore,
    fleet: &Fleet,
    now: i64,
) -> Result<(Engine, Vec<switchyard_store::NodeRecord>), StoreError> {
    let mut engine = Engine::new(fleet, Clock::starting_at(now));
    let records = store.active_jobs().await?;
    for r in &records {
        admit(&mut engine, r, now);
    }
    let nodes = store.nodes().await?;
    // Gangs go back where their ranks ran, if those nodes are free (their ranks may run on).
    let slots: HashMap<&str, (&str, i64)> = nodes
        .iter()
        .map(|n| (n.id.as_str(), (n.cluster.as_str(), n.slot)))
        .collect();
    let shares_of = |cluster: &str, nodes: &[(String, Vec<u32>)]| -> Option<Vec<NodeShare>> {
        nodes
            .iter()
            .map(|(id, accelerators)| {
                let &(on, slot) = slots.get(id.as_str())?;
                Some(NodeShare {
                    node: u32::try_from(slot).ok().filter(|_| on == cluster)?,
                    accelerators: u32::try_from(accelerators.len()).ok()?,
                })
            })
            .collect()
    };
    // (Services' replicas: the backend says which still serve, once it has heard from their
    // nodes: `Backend::live_recovered_replicas`.)
    for r in records.iter().filter(|r| r.state == JobState::Running) {
        let (Some(cluster), Some(placement)) = (
            r.cluster.as_deref(),
            r.ran_on.as_ref().and_then(|o| o.placement.as_ref()),
        ) else {
            continue;
        };
        if let Some(shares) = shares_of(cluster, &placement.nodes) {
            engine.recovered_at(&r.id, cluster, shares);
        }
    }
    Ok((engine, nodes))
}

/// The active jobs of `records` that `fleet` can never run (a cluster they name, or every
/// accelerator type they accept, is gone from it; its clusters or quotas are now too small):
/// (id, why). A new leader would reject them, for good, when it rebuilds the scheduler.
pub(crate) fn unrunnable(fleet: &Fleet, records: &[JobRecord]) -> Vec<(String, String)> {
    let mut validator =
        switchyard_sched::Scheduler::new(fleet, Default::default(), Default::default());
    records
        .iter()
        .filter_map(|r| {
            // A stored specification this release cannot read is not the fleet's doing.
            let (spec, _) = stored_spec(r).ok()?;
            validator
                .validate(&spec)
                .err()
                .map(|why| (r.id.clone(), why))
        })
        .collect()
}

fn admit(engine: &mut Engine, r: &JobRecord, now: i64) {
    match stored_spec(r) {
        Ok((spec, extras)) => engine.admit_with(now, r, spec, extras),
        Err(why) => engine.refuse(now, r, &format!("stored specification is invalid: {why}")),
    }
}

/// The job a stored record describes, as the scheduler takes it, or why it cannot be read.
fn stored_spec(r: &JobRecord) -> Result<(switchyard_core::JobSpec, JobExtras), String> {
    let req = serde_json::from_str::<SubmitRequest>(&r.spec).map_err(|e| e.to_string())?;
    let spec = req
        .to_spec(&r.id, &r.tenant, r.priority as i32)
        .map_err(|refusal| refusal.message)?;
    let extras = JobExtras {
        command: req.command.map(Arc::new),
        max_retries: req.max_retries,
    };
    Ok((spec, extras))
}

/// One pass: take in new submissions and cancellations, what the backend saw, schedule,
/// commit, then act.
async fn pass(
    store: &AnyStore,
    cfg: &LoopConfig,
    l: &mut Leading,
    backend: &mut dyn Backend,
    metrics: &Metrics,
    now: i64,
) -> Result<(), StoreError> {
    let unseen = store.unseen_jobs(2000).await?;
    let cancels = store.cancel_requests().await?;
    let scales = store.scale_requests().await?;
    // What the pass records happened no earlier than the requests it read: a cancellation
    // asked for after the tick began (its `cancel_requested` event stamped then) must not end
    // the job at an earlier moment.
    let now = now.max(now_ms());
    for r in unseen {
        admit(&mut l.engine, &r, now);
    }
    for id in cancels {
        l.engine.cancel(now, &id);
    }
    // Every pass (and a new leader's first): the engine passes on only what changed.
    for (id, replicas) in scales {
        l.engine.scale(now, &id, replicas);
    }
    // The drains the store records, every pass: an administrator's drain answered by another
    // replica, or by this one in a moment its term changed, is followed within a pass.
    if let Some(epoch) = backend.drain_epoch() {
        let drained = store.drained_nodes().await?;
        backend.drains_on_record(&drained, epoch);
    }
    let mut output = Vec::new();
    let mut observed = backend.poll(now).into_iter().peekable();
    while let Some(o) = observed.next() {
        match o {
            Observed::Finished { job, generation } => l.engine.finished(now, &job, generation),
            Observed::Failed {
                job,
                generation,
                reason,
            } => l.engine.failed(now, &job, generation, &reason),
            Observed::Interrupted {
                job,
                generation,
                reason,
            } => l.engine.interrupted(now, &job, generation, &reason),
            Observed::Event {
                job,
                kind,
                message,
                cluster,
            } => l.engine.note(now, &job, &kind, &message, cluster),
            Observed::Held {
                job,
                generation,
                why,
                interrupted,
            } => l.engine.held(now, &job, generation, &why, interrupted),
            Observed::Paused {
                job,
                generation,
                why,
            } => l.engine.paused(now, &job, generation, &why),
            Observed::Began {
                job,
                generation,
                since_ms,
            } => l.engine.began(now, &job, generation, since_ms),
            Observed::RanOn {
                job,
                generation,
                ran_on,
            } => l.engine.ran_on(&job, generation, ran_on),
            Observed::ReplicasOn { job, replicas } => l.engine.replicas_on(&job, replicas),
            Observed::Continued {
                job,
                generation,
                attempt,
            } => l.engine.continued(now, &job, generation, attempt),
            Observed::Output(lines) => output.extend(lines),
            Observed::NodeFailed { cluster, node } => {
                // Nodes a poll found failed together fail together: a gang on two of them
                // restarts once.
                let mut nodes = vec![node];
                while let Some(Observed::NodeFailed { node, .. }) = observed.next_if(
                    |o| matches!(o, Observed::NodeFailed { cluster: c, .. } if *c == cluster),
                ) {
                    nodes.push(node);
                }
                l.engine.nodes_failed(now, cluster, nodes);
            }
            // (No batching: a drain stops nothing, so draining together changes nothing.)
            Observed::NodeDrained { cluster, node } => {
                l.engine.nodes_drained(now, cluster, vec![node]);
            }
            Observed::NodeRepaired { cluster, node } => l.engine.node_repaired(now, cluster, node),
            Observed::NodeNamed {
                cluster,
                node,
                host,
            } => l.engine.name_node(cluster, node, &host),
        }
    }
    let before = l.engine.decisions();
    let t0 = Instant::now();
    // (A new leader waits a moment to hear where the running gangs' ranks run.)
    let settling = backend.settling(now);
    l.engine.set_settling(settling);
    if !settling {
        for (job, replicas) in backend.live_recovered_replicas() {
            l.engine.recovered_replicas_at(&job, replicas);
        }
        l.engine.schedule(now);
    }
    metrics.observe_pass(t0.elapsed().as_secs_f64());
    let (batch, commands) = l.engine.take(now);
    if !batch.is_empty() {
        // Durable first: the backend hears of a decision only once it is committed.
        store.apply(&l.lease, &batch).await?;
    }
    metrics
        .decisions
        .fetch_add(l.engine.decisions() - before, Ordering::Relaxed);
    metrics
        .jobs_held
        .store(l.engine.held_jobs() as u64, Ordering::Relaxed);
    // A pass (or its write) that ran long may have outlived the lease, and another replica
    // may lead by now: renewed first (or stepped down), so that two leaders never act on a
    // backend at once. The decisions are stored either way.
    let ttl_ms = cfg.lease_ttl.as_millis() as i64;
    if !in_time(&l.lease, ttl_ms) {
        renew(store, cfg, l, metrics, now_ms()).await?;
    }
    backend.act(commands);
    if let Err(e) = store_output(store, output).await {
        tracing::warn!(error = %e, "could not store job output; those lines are lost");
    }
    Ok(())
}

/// Keeps what the backend read of the jobs' output (best effort: a failed write is logged and
/// does not step the leader down; the backend does not resend it).
pub(crate) async fn store_output(
    store: &AnyStore,
    lines: Vec<crate::backend::OutputLine>,
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let lines: Vec<switchyard_store::LogLine> = lines
        .into_iter()
        .map(|l| switchyard_store::LogLine {
            job_id: l.job,
            attempt: i64::from(l.attempt),
            rank: i64::from(l.rank),
            assignment_id: l.source,
            stream: l.stream.to_owned(),
            seq: i64::try_from(l.seq).unwrap_or(i64::MAX),
            at_ms: l.at_ms,
            line: l.line,
        })
        .collect();
    store.append_logs(&lines).await?;
    Ok(())
}

/// A warning that may come every tick while its cause lasts: due when its text changes or a
/// minute has passed since it was last given.
#[derive(Debug, Default)]
struct RepeatedWarning {
    last: Option<(String, i64)>,
}

impl RepeatedWarning {
    const EVERY_MS: i64 = 60_000;

    fn due(&mut self, text: &str, now_ms: i64) -> bool {
        let due = self
            .last
            .as_ref()
            .is_none_or(|(said, at)| said != text || now_ms.saturating_sub(*at) >= Self::EVERY_MS);
        if due {
            self.last = Some((text.to_owned(), now_ms));
        }
        due
    }

    /// The cause is over: the next warning is news.
    fn clear(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lasting_warning_is_given_once_a_minute_or_when_it_changes() {
        let mut w = super::RepeatedWarning::default();
        assert!(w.due("down", 0));
        assert!(!w.due("down", 200));
        assert!(!w.due("down", 59_999));
        assert!(w.due("down", 60_000));
        assert!(w.due("refused", 60_200));
        w.clear();
        assert!(w.due("refused", 60_400));
    }

    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789.
        assert_eq!(utc(951_827_696_789), "2000-02-29 12:34:56");
        assert_eq!(utc(1_764_547_200_000), "2025-12-01 00:00:00");
        assert_eq!(utc(-1_000), "1969-12-31 23:59:59");
    }

    #[test]
    fn a_lease_written_for_a_moment_long_past_is_not_acted_on() {
        let ttl = 3_000;
        let asked = |ago_ms: i64| switchyard_store::Lease {
            holder: "me".into(),
            term: 1,
            expires_ms: now_ms() - ago_ms + ttl,
        };
        assert!(in_time(&asked(0), ttl));
        // A slow store (2 s of the 3 s) still leaves time to act.
        assert!(in_time(&asked(2_000), ttl));
        // Answered about when it runs out, or after: another replica may hold it.
        assert!(!in_time(&asked(2_600), ttl));
        assert!(!in_time(&asked(10_000), ttl));
        // A late lease is due for renewal at the very next round (a tick later), a fresh one
        // a third of a lease later.
        let now = now_ms();
        let due = |renewed: i64| now + 200 - renewed >= ttl / 3;
        assert!(due(renewed_at(&asked(2_600), now, ttl)));
        assert!(!due(renewed_at(&asked(0), now, ttl)));
    }

    /// Stands for the Slurm backend, whose drop waits for its worker's round; it notes
    /// whether the lease was still held when its drop ended.
    #[derive(Debug)]
    struct SlowToDrop(Arc<AtomicBool>, AnyStore, Arc<AtomicBool>);

    impl Backend for SlowToDrop {
        fn name(&self) -> &'static str {
            "slow-to-drop"
        }
        fn act(&mut self, _: Vec<crate::backend::Command>) {}
        fn poll(&mut self, _: i64) -> Vec<Observed> {
            Vec::new()
        }
        fn reset(&mut self) {}
    }

    impl Drop for SlowToDrop {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_secs(1));
            let lease = tokio::runtime::Handle::current().block_on(self.1.current_leader());
            self.2.store(
                lease.is_ok_and(|l| l.expires_ms > now_ms()),
                Ordering::SeqCst,
            );
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// On one runtime thread, other tasks keep running while a stopping leader drops its
    /// backend; the lease is given up only once the backend has stopped (the next leader
    /// must not meet this one's last round of backend commands).
    #[tokio::test(flavor = "current_thread")]
    async fn a_stopping_leader_drops_its_backend_off_the_async_threads() {
        use switchyard_store::StoreRead as _;
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("store");
        let dropped = Arc::new(AtomicBool::new(false));
        let held_at_drop = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = watch::channel(false);
        let leader = tokio::spawn(run(
            store.clone(),
            Arc::new(Fleet::default_fleet()),
            Box::new(SlowToDrop(
                dropped.clone(),
                store.clone(),
                held_at_drop.clone(),
            )),
            Arc::new(Metrics::default()),
            Arc::new(Notify::new()),
            stopped,
            LoopConfig {
                tick: Duration::from_millis(10),
                lease_ttl: Duration::from_secs(5),
                holder: "test".into(),
                fleet: String::new(),
            },
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).expect("the leader listens");
        let mut ticks = 0;
        while !dropped.load(Ordering::SeqCst) && ticks < 1_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ticks += 1;
        }
        leader.await.expect("the leader stops");
        assert!(dropped.load(Ordering::SeqCst));
        assert!(ticks >= 5, "this task ran {ticks} times during the drop");
        assert!(
            held_at_drop.load(Ordering::SeqCst),
            "released before the backend stopped"
        );
        let lease = store.current_leader().await.expect("lease");
        assert_eq!(lease.expires_ms, 0, "given up once the backend stopped");
    }

    /// A dry run's end is seen when it comes, not a tick later: with a 30 s tick, a job of a
    /// fraction of a second is done in about that.
    #[tokio::test(flavor = "current_thread")]
    async fn a_dry_runs_end_is_seen_when_it_comes() {
        use switchyard_store::{JobState, StoreRead as _, StoreWrite as _};
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("store");
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let leader = tokio::spawn(run(
            store.clone(),
            Arc::new(Fleet::default_fleet()),
            Box::new(crate::backend::DryRun::default()),
            Arc::new(Metrics::default()),
            wake.clone(),
            stopped,
            LoopConfig {
                tick: Duration::from_secs(30),
                lease_ttl: Duration::from_secs(60),
                holder: "test".into(),
                fleet: String::new(),
            },
        ));
        // The first tick takes the lease.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let job = store
            .insert_job(&switchyard_store::testing::batch_job(
                "j-0000000000000001",
                "research",
                r#"{"kind":"batch","accelerators":8,"duration_s":0.2}"#,
                now_ms(),
            ))
            .await
            .expect("submit");
        wake.notify_one();
        let started = Instant::now();
        let mut state = JobState::Pending;
        while state != JobState::Done && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            state = store
                .get_job(&job.id, None)
                .await
                .expect("read")
                .expect("the job")
                .state;
        }
        stop.send(true).expect("the leader listens");
        leader.await.expect("the leader stops");
        assert_eq!(state, JobState::Done, "after {:?}", started.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// This replica leading on `store` with a lease taken at `tick` for `ttl_ms`.
    async fn leading_at(store: &AnyStore, tick: i64, ttl_ms: i64) -> Leading {
        let lease = store
            .acquire_lease("test", "", tick, ttl_ms)
            .await
            .expect("store")
            .expect("the lease");
        let (engine, _) = recover(store, &Fleet::default_fleet(), tick)
            .await
            .expect("recover");
        Leading {
            lease,
            engine,
            renewed_ms: tick,
        }
    }

    fn test_config(ttl_ms: u64) -> LoopConfig {
        LoopConfig {
            tick: Duration::from_millis(200),
            lease_ttl: Duration::from_millis(ttl_ms),
            holder: "test".into(),
            fleet: String::new(),
        }
    }

    /// Counts the batches of commands it is given.
    #[derive(Debug, Default)]
    struct CountsActs(Arc<std::sync::atomic::AtomicUsize>);

    impl Backend for CountsActs {
        fn name(&self) -> &'static str {
            "counts-acts"
        }
        fn act(&mut self, _: Vec<crate::backend::Command>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn poll(&mut self, _: i64) -> Vec<Observed> {
            Vec::new()
        }
        fn reset(&mut self) {}
    }

    /// A pass that outlived its lease does not act on the backend unless it renews the lease
    /// first: another replica that took it meanwhile is the only one acting.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pass_that_outlived_its_lease_renews_it_before_acting() {
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("store");
        let tick = now_ms() - 10_000;
        let mut leading = leading_at(&store, tick, 3_000).await;
        let metrics = Metrics::default();
        let acts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut backend = CountsActs(acts.clone());
        // Nobody took it: renewed (same term), then acted on.
        pass(
            &store,
            &test_config(3_000),
            &mut leading,
            &mut backend,
            &metrics,
            tick,
        )
        .await
        .expect("renewed and acted");
        assert_eq!(acts.load(Ordering::SeqCst), 1);
        assert!(in_time(&leading.lease, 3_000));
        // Another replica took it once it ran out: no act, stepped down.
        leading.lease.expires_ms = now_ms() - 1;
        store
            .acquire_lease("other", "", now_ms() + 3_100, 3_000)
            .await
            .expect("store")
            .expect("taken");
        let lost = pass(
            &store,
            &test_config(3_000),
            &mut leading,
            &mut backend,
            &metrics,
            tick,
        )
        .await;
        assert!(matches!(lost, Err(StoreError::LostLease)), "{lost:?}");
        assert_eq!(
            acts.load(Ordering::SeqCst),
            1,
            "no act after the lease was lost"
        );
    }

    /// A cancellation asked for after a pass's tick began is carried out no earlier than it
    /// was asked: the job's `cancelled` event and its end never come before `cancel_requested`.
    #[tokio::test(flavor = "current_thread")]
    async fn a_job_is_not_cancelled_before_it_was_asked_to_be() {
        use switchyard_store::StoreWrite as _;
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("store");
        let tick = now_ms() - 10_000;
        let job = store
            .insert_job(&switchyard_store::testing::batch_job(
                "j-0000000000000001",
                "research",
                r#"{"kind":"batch","accelerators":8,"duration_s":1000}"#,
                tick - 1000,
            ))
            .await
            .expect("submit");
        let mut leading = leading_at(&store, tick, 60_000).await;
        let mut backend = crate::backend::DryRun::default();
        let metrics = Metrics::default();
        // The tick began 10 s ago; the cancellation is asked for now.
        let asked = now_ms();
        store
            .request_cancel(&job.id, None, asked)
            .await
            .expect("store")
            .expect("the job");
        pass(
            &store,
            &test_config(60_000),
            &mut leading,
            &mut backend,
            &metrics,
            tick,
        )
        .await
        .expect("a pass");
        let events = store
            .events(&job.id, None, 0, 100)
            .await
            .expect("read")
            .expect("the job");
        let at = |kind: &str| {
            events
                .iter()
                .find(|e| e.kind == kind)
                .unwrap_or_else(|| panic!("a {kind} event: {events:#?}"))
                .at_ms
        };
        assert!(at("cancelled") >= at("cancel_requested"), "{events:#?}");
        let ended = store
            .get_job(&job.id, None)
            .await
            .expect("read")
            .expect("the job");
        assert!(
            ended.finished_ms.is_some_and(|f| f >= asked),
            "{:?}",
            ended.finished_ms
        );
    }

    /// Launches seen: (attempt, nodes).
    type Launches = Arc<std::sync::Mutex<Vec<(u32, Vec<u32>)>>>;

    /// Names its 4 nodes `host-0` … `host-3` at its first poll; fails (or with `drain`,
    /// drains) every node of the first launch it is given, all in one poll; records launches.
    #[derive(Debug, Default)]
    struct FailsTheFirstGang {
        launches: Launches,
        drain: bool,
        named: bool,
        fail: Vec<u32>,
        failed: bool,
    }

    impl Backend for FailsTheFirstGang {
        fn name(&self) -> &'static str {
            "fails-the-first-gang"
        }
        fn act(&mut self, commands: Vec<crate::backend::Command>) {
            for c in commands {
                if let crate::backend::Command::Launch { attempt, nodes, .. } = c {
                    let nodes: Vec<u32> = nodes.iter().map(|n| n.node).collect();
                    if !self.failed && self.fail.is_empty() {
                        self.fail.clone_from(&nodes);
                    }
                    self.launches
                        .lock()
                        .expect("launches")
                        .push((attempt, nodes));
                }
            }
        }
        fn poll(&mut self, _: i64) -> Vec<Observed> {
            if !self.named {
                self.named = true;
                return (0..4)
                    .map(|node| Observed::NodeNamed {
                        cluster: 0,
                        node,
                        host: format!("host-{node}"),
                    })
                    .collect();
            }
            if self.failed || self.fail.is_empty() {
                return Vec::new();
            }
            self.failed = true;
            self.fail
                .iter()
                .map(|&node| {
                    if self.drain {
                        Observed::NodeDrained { cluster: 0, node }
                    } else {
                        Observed::NodeFailed { cluster: 0, node }
                    }
                })
                .collect()
        }
        fn reset(&mut self) {}
    }

    /// The scheduling loop on `store` with `backend`, leading after a moment (ticks of 10 ms):
    /// its task, its stop switch and its wake-up.
    async fn lead(
        store: &AnyStore,
        fleet: Fleet,
        backend: impl Backend + 'static,
    ) -> (
        tokio::task::JoinHandle<()>,
        watch::Sender<bool>,
        Arc<Notify>,
    ) {
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let leader = tokio::spawn(run(
            store.clone(),
            Arc::new(fleet),
            Box::new(backend),
            Arc::new(Metrics::default()),
            wake.clone(),
            stopped,
            LoopConfig {
                tick: Duration::from_millis(10),
                lease_ttl: Duration::from_secs(60),
                holder: "test".into(),
                fleet: String::new(),
            },
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        (leader, stop, wake)
    }

    /// An empty in-memory store and a local fleet of 4 two-accelerator nodes.
    async fn store_and_local_fleet() -> (AnyStore, Fleet) {
        let store = switchyard_store::connect("sqlite::memory:")
            .await
            .expect("store");
        let fleet = Fleet::from_toml(
            &switchyard_core::fleet::local_fleet_toml("t", 4, 2, ""),
            "t.toml",
        )
        .expect("fleet");
        (store, fleet)
    }

    /// A follower that finds the lease held for another fleet refuses submissions and the
    /// lease. When that leader is gone it leads again only if its own fleet can run every
    /// active job (the other may have left jobs on clusters this one lacks).
    #[tokio::test(flavor = "current_thread")]
    async fn a_follower_of_a_leader_on_another_fleet_says_so() {
        use switchyard_store::StoreWrite as _;
        for stranded in [true, false] {
            let (store, fleet) = store_and_local_fleet().await;
            if stranded {
                store
                    .insert_job(&switchyard_store::testing::batch_job(
                        "j-0000000000000001",
                        "research",
                        r#"{"kind":"batch","accelerators":1,"duration_s":10,"clusters":["elsewhere"]}"#,
                        now_ms(),
                    ))
                    .await
                    .expect("submit");
            }
            let theirs = store
                .acquire_lease("other", "other-fleet:0123456789abcdef", now_ms(), 1_000)
                .await
                .expect("store")
                .expect("free");
            let metrics = Arc::new(Metrics::default());
            let (stop, stopped) = watch::channel(false);
            let follower = tokio::spawn(run(
                store.clone(),
                Arc::new(fleet),
                Box::new(crate::backend::DryRun::default()),
                metrics.clone(),
                Arc::new(Notify::new()),
                stopped,
                LoopConfig {
                    tick: Duration::from_millis(10),
                    lease_ttl: Duration::from_secs(60),
                    holder: "me".into(),
                    fleet: "t:fedcba9876543210".into(),
                },
            ));
            let conflict = async {
                loop {
                    if let Some(why) = metrics.fleet_conflict() {
                        return why;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let why = tokio::time::timeout(Duration::from_secs(5), conflict)
                .await
                .expect("the follower notices");
            assert!(
                why.contains("fleet t:fedcba9876543210")
                    && why.contains("(other) runs fleet other-fleet:0123456789abcdef"),
                "{why}"
            );
            // The other leader's lease runs out.
            tokio::time::sleep(Duration::from_millis(
                u64::try_from(theirs.expires_ms - now_ms()).unwrap_or(0) + 300,
            ))
            .await;
            let holder = store.current_leader().await.expect("lease").holder;
            if stranded {
                // A job on a cluster this fleet lacks: leading would reject it for good.
                assert!(metrics.fleet_conflict().is_some());
                assert_eq!(holder, "other");
            } else {
                assert!(metrics.fleet_conflict().is_none());
                assert_eq!(holder, "me");
            }
            stop.send(true).expect("the loop listens");
            follower.await.expect("the loop stops");
        }
    }

    /// Nodes a backend finds failed in one poll fail together: a gang on two of them restarts
    /// once (attempt 2, on spares), not once per node.
    #[tokio::test(flavor = "current_thread")]
    async fn a_gang_whose_nodes_fail_in_one_poll_restarts_once() {
        use switchyard_store::StoreWrite as _;
        let (store, fleet) = store_and_local_fleet().await;
        let backend = FailsTheFirstGang::default();
        let launches = backend.launches.clone();
        let (leader, stop, wake) = lead(&store, fleet, backend).await;
        store
            .insert_job(&switchyard_store::testing::batch_job(
                "j-0000000000000001",
                "research",
                r#"{"kind":"batch","accelerators":4,"duration_s":1000}"#,
                now_ms(),
            ))
            .await
            .expect("submit");
        wake.notify_one();
        let started = Instant::now();
        while launches.lock().expect("launches").len() < 2
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A few more passes: nothing else may follow.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).expect("the leader listens");
        leader.await.expect("the leader stops");
        let launches = launches.lock().expect("launches").clone();
        assert_eq!(launches.len(), 2, "{launches:?}");
        let (first, second) = (&launches[0], &launches[1]);
        assert_eq!((first.0, second.0), (1, 2), "{launches:?}");
        assert_eq!(first.1.len(), 2, "a gang over two nodes: {launches:?}");
        assert!(
            second.1.iter().all(|n| !first.1.contains(n)),
            "on spares only: {launches:?}"
        );
        // Its events name the nodes by the hosts the backend named them.
        let events = store
            .events("j-0000000000000001", None, 0, 100)
            .await
            .expect("read")
            .expect("the job");
        let hosts = |nodes: &[u32]| {
            nodes
                .iter()
                .map(|n| format!("host-{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (failed, spares) = (hosts(&first.1), hosts(&second.1));
        let said = |kind: &str, text: &str| {
            events
                .iter()
                .any(|e| e.kind == kind && e.message.contains(text))
        };
        assert!(
            said("restarted", &format!("nodes {failed} of local failed")),
            "{events:#?}"
        );
        assert!(
            said(
                "started",
                &format!("on spare nodes {spares} of local in place of failed nodes {failed}")
            ),
            "{events:#?}"
        );
    }

    /// Nodes a backend finds drained keep their gang running (one launch, no restart) and
    /// take no new work: the next gang starts on the other nodes, a third waits.
    #[tokio::test(flavor = "current_thread")]
    async fn a_gang_whose_nodes_are_drained_runs_on() {
        use switchyard_store::{JobState, StoreRead as _, StoreWrite as _};
        let (store, fleet) = store_and_local_fleet().await;
        let backend = FailsTheFirstGang {
            drain: true,
            ..FailsTheFirstGang::default()
        };
        let launches = backend.launches.clone();
        let (leader, stop, wake) = lead(&store, fleet, backend).await;
        let submit = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .insert_job(&switchyard_store::testing::batch_job(
                        id,
                        "research",
                        r#"{"kind":"batch","accelerators":4,"duration_s":1000}"#,
                        now_ms(),
                    ))
                    .await
                    .expect("submit");
            }
        };
        let launched = |n: usize| {
            let launches = launches.clone();
            async move {
                let started = Instant::now();
                while launches.lock().expect("launches").len() < n
                    && started.elapsed() < Duration::from_secs(10)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        submit("j-0000000000000001").await;
        wake.notify_one();
        launched(1).await;
        // Passes after the drain: no restart.
        tokio::time::sleep(Duration::from_millis(200)).await;
        submit("j-0000000000000002").await;
        wake.notify_one();
        launched(2).await;
        submit("j-0000000000000003").await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).expect("the leader listens");
        leader.await.expect("the leader stops");
        let launches = launches.lock().expect("launches").clone();
        assert_eq!(launches.len(), 2, "{launches:?}");
        let (first, second) = (&launches[0], &launches[1]);
        assert_eq!(
            (first.0, second.0),
            (1, 1),
            "both first attempts: {launches:?}"
        );
        assert!(
            second.1.iter().all(|n| !first.1.contains(n)),
            "not on the drained nodes: {launches:?}"
        );
        let state = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .get_job(id, None)
                    .await
                    .expect("read")
                    .expect("the job")
                    .state
            }
        };
        assert_eq!(state("j-0000000000000001").await, JobState::Running);
        assert_eq!(state("j-0000000000000003").await, JobState::Pending);
    }
}
