//! Prometheus metrics, written out by hand in the text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use switchyard_core::fleet::Fleet;
use switchyard_store::{ClusterUsage, TenantUsage};

/// Upper bounds of the scheduling-pass latency histogram, seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Counters the server updates as it goes.
#[derive(Debug, Default)]
pub struct Metrics {
    pub submissions: AtomicU64,
    pub cancellations: AtomicU64,
    pub decisions: AtomicU64,
    pub leader: AtomicBool,
    /// When the scheduling lease this replica holds runs out unless renewed (Unix ms; 0 when
    /// it holds none): past it another replica may lead, so this one no longer answers agents.
    pub lease_expires_ms: std::sync::atomic::AtomicI64,
    pub leader_terms: AtomicU64,
    /// Jobs the scheduling leader holds in memory (0 on followers).
    pub jobs_held: AtomicU64,
    pass_buckets: [AtomicU64; BUCKETS.len()],
    pass_count: AtomicU64,
    pass_sum_ns: AtomicU64,
    /// Why this follower refuses submissions: the leader runs another fleet.
    fleet_conflict: std::sync::Mutex<Option<String>>,
}

impl Metrics {
    /// Whether this replica leads at `now_ms`: it won the lease and the lease has not run out
    /// unrenewed. A replica that stood still (paused, its store slow) past its lease may have
    /// been replaced before it notices: from then on it no longer says it leads.
    pub fn holds_lease(&self, now_ms: i64) -> bool {
        self.leader.load(Ordering::Relaxed)
            && now_ms < self.lease_expires_ms.load(Ordering::Relaxed)
    }

    /// Why this replica refuses submissions, if it does ([`Metrics::set_fleet_conflict`]).
    pub fn fleet_conflict(&self) -> Option<String> {
        self.fleet_conflict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_fleet_conflict(&self, conflict: Option<String>) {
        *self
            .fleet_conflict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = conflict;
    }

    /// Records one scheduling pass of `seconds`.
    pub fn observe_pass(&self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.pass_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.pass_count.fetch_add(1, Ordering::Relaxed);
        self.pass_sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    /// The exposition text, with the store's current queue and usage figures (`None` when the
    /// store did not answer in time: those series are left out, `switchyard_store_up` reads 0,
    /// and the rest, from this process's memory, is there for the scrape).
    pub fn render(
        &self,
        fleet: &Fleet,
        usage: Option<(&[TenantUsage], &[ClusterUsage])>,
    ) -> String {
        let mut s = String::new();
        let ld = |x: &AtomicU64| x.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP switchyard_store_up 1 when the store answered this scrape's reads in time."
        );
        let _ = writeln!(s, "# TYPE switchyard_store_up gauge");
        let _ = writeln!(s, "switchyard_store_up {}", u8::from(usage.is_some()));
        let (tenants, clusters) = usage.unwrap_or_default();
        let _ = writeln!(s, "# HELP switchyard_queue_length Pending jobs per tenant.");
        let _ = writeln!(s, "# TYPE switchyard_queue_length gauge");
        for t in tenants {
            let _ = writeln!(
                s,
                "switchyard_queue_length{{tenant=\"{}\"}} {}",
                esc(&t.tenant),
                t.pending
            );
        }
        let _ = writeln!(s, "# HELP switchyard_jobs_running Running jobs per tenant.");
        let _ = writeln!(s, "# TYPE switchyard_jobs_running gauge");
        for t in tenants {
            let _ = writeln!(
                s,
                "switchyard_jobs_running{{tenant=\"{}\"}} {}",
                esc(&t.tenant),
                t.running
            );
        }
        let _ = writeln!(
            s,
            "# HELP switchyard_accelerators_busy Accelerators allocated per cluster."
        );
        let _ = writeln!(s, "# TYPE switchyard_accelerators_busy gauge");
        for c in fleet.clusters.iter().filter(|_| usage.is_some()) {
            let busy = clusters
                .iter()
                .find(|u| u.cluster == c.name)
                .map_or(0, |u| u.allocated);
            let _ = writeln!(
                s,
                "switchyard_accelerators_busy{{cluster=\"{}\"}} {busy}",
                esc(&c.name)
            );
        }
        let _ = writeln!(
            s,
            "# HELP switchyard_accelerators_total Accelerators per cluster."
        );
        let _ = writeln!(s, "# TYPE switchyard_accelerators_total gauge");
        for c in &fleet.clusters {
            let _ = writeln!(
                s,
                "switchyard_accelerators_total{{cluster=\"{}\"}} {}",
                esc(&c.name),
                c.accelerators()
            );
        }
        let _ = writeln!(
            s,
            "# HELP switchyard_scheduling_pass_seconds Time of one scheduling pass (leader only)."
        );
        let _ = writeln!(s, "# TYPE switchyard_scheduling_pass_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "switchyard_scheduling_pass_seconds_bucket{{le=\"{b}\"}} {}",
                ld(&self.pass_buckets[i])
            );
        }
        let count = ld(&self.pass_count);
        let _ = writeln!(
            s,
            "switchyard_scheduling_pass_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "switchyard_scheduling_pass_seconds_sum {}",
            ld(&self.pass_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(s, "switchyard_scheduling_pass_seconds_count {count}");
        let _ = writeln!(
            s,
            "# HELP switchyard_decisions_total Scheduling decisions taken by this server while leader (rate() gives decisions per second)."
        );
        let _ = writeln!(s, "# TYPE switchyard_decisions_total counter");
        let _ = writeln!(s, "switchyard_decisions_total {}", ld(&self.decisions));
        let _ = writeln!(
            s,
            "# HELP switchyard_submissions_total Submissions accepted by this server."
        );
        let _ = writeln!(s, "# TYPE switchyard_submissions_total counter");
        let _ = writeln!(s, "switchyard_submissions_total {}", ld(&self.submissions));
        let _ = writeln!(
            s,
            "# HELP switchyard_cancellations_total Cancellations requested through this server."
        );
        let _ = writeln!(s, "# TYPE switchyard_cancellations_total counter");
        let _ = writeln!(
            s,
            "switchyard_cancellations_total {}",
            ld(&self.cancellations)
        );
        let _ = writeln!(
            s,
            "# HELP switchyard_leader 1 while this server holds the scheduling lease."
        );
        let _ = writeln!(s, "# TYPE switchyard_leader gauge");
        let _ = writeln!(
            s,
            "switchyard_leader {}",
            u8::from(self.holds_lease(crate::leader::now_ms()))
        );
        let _ = writeln!(
            s,
            "# HELP switchyard_leader_terms_total Times this server became leader."
        );
        let _ = writeln!(s, "# TYPE switchyard_leader_terms_total counter");
        let _ = writeln!(
            s,
            "switchyard_leader_terms_total {}",
            ld(&self.leader_terms)
        );
        let _ = writeln!(
            s,
            "# HELP switchyard_scheduler_jobs_held Jobs the scheduling leader holds in memory: pending and running (ended jobs are let go once stored)."
        );
        let _ = writeln!(s, "# TYPE switchyard_scheduler_jobs_held gauge");
        let _ = writeln!(s, "switchyard_scheduler_jobs_held {}", ld(&self.jobs_held));
        s
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
