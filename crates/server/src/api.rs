//! The wire format of the HTTP API (`/v1`): requests, responses and errors. The client verbs
//! use these same types, and the job files of `switchyard submit` are [`SubmitRequest`]s
//! written in TOML. Unknown fields are errors in requests; responses may grow fields, so a
//! client reading them ignores the ones it does not know (an older CLI keeps working against a
//! newer server).

use serde::{Deserialize, Serialize};
use switchyard_core::fleet::Fleet;
use switchyard_core::job::MAX_PRIORITY;
use switchyard_core::{JobKind, JobSpec, Replicas, Work};
use switchyard_store::JobRecord;

/// Largest request body the server reads, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest page of a list.
pub const MAX_PAGE: i64 = 1000;

/// A page of `GET /v1/jobs` ends early once the specifications it lists reach this many bytes
/// (a page of 1,000 jobs of 64 KiB submissions would otherwise be 64 MiB); `next` continues.
pub const LIST_SPEC_BYTES: i64 = 4 << 20;
const MAX_ACCELERATORS: u32 = 1_000_000;
const MAX_DURATION_S: f64 = 366.0 * 86_400.0;
const MAX_LIST_ENTRIES: usize = 64;
/// The most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 100_000;

/// A whole-number field's own range, named when a number its type cannot hold is refused (a
/// negative count, one past 32 bits, a fraction): "from 1 to 1000000", not the type's "from 0
/// to 4294967295". Numbers the type holds but the range does not are refused by `validate`, as
/// 422, with the same range.
trait WholeRange {
    /// What the number counts, read after "a whole number" (" of accelerators"), or "".
    const OF: &'static str;
    const LO: i64;
    const HI: i64;
}

struct Accelerators;
impl WholeRange for Accelerators {
    const OF: &'static str = " of accelerators";
    const LO: i64 = 1;
    const HI: i64 = MAX_ACCELERATORS as i64;
}
struct Retries;
impl WholeRange for Retries {
    const OF: &'static str = " of retries";
    const LO: i64 = 0;
    const HI: i64 = MAX_RETRIES as i64;
}
struct Priority;
impl WholeRange for Priority {
    const OF: &'static str = "";
    const LO: i64 = -(MAX_PRIORITY as i64);
    const HI: i64 = MAX_PRIORITY as i64;
}
struct ReplicaCount;
impl WholeRange for ReplicaCount {
    const OF: &'static str = " of replicas";
    const LO: i64 = 1;
    const HI: i64 = MAX_REPLICAS as i64;
}

/// A `T` read with [`WholeRange`] `R`'s words when `T` cannot hold the number.
struct Whole<T, R>(T, std::marker::PhantomData<R>);

impl<'de, T, R> Deserialize<'de> for Whole<T, R>
where
    T: TryFrom<i64> + TryFrom<u64>,
    R: WholeRange,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T, R>(std::marker::PhantomData<(T, R)>);
        impl<T, R> serde::de::Visitor<'_> for Visit<T, R>
        where
            T: TryFrom<i64> + TryFrom<u64>,
            R: WholeRange,
        {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a whole number{} from {} to {}", R::OF, R::LO, R::HI)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<T, E> {
                T::try_from(n).map_err(|_| out_of_range::<E, R>(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<T, E> {
                T::try_from(n).map_err(|_| out_of_range::<E, R>(n))
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<T, E> {
                // (As written: `1.0`, not the `1` it displays as.)
                let err = out_of_range::<E, R>(format!("{x:?}"));
                if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
                    // `1e3` or `1000.0`: whole, but written as a fraction would be.
                    return Err(E::custom(format!(
                        "{err} as written: write it as {}, without a decimal point or exponent",
                        x as i64
                    )));
                }
                Err(err)
            }
        }
        fn out_of_range<E: serde::de::Error, R: WholeRange>(n: impl std::fmt::Display) -> E {
            E::custom(format!(
                "{n} is not a whole number{} from {} to {}",
                R::OF,
                R::LO,
                R::HI
            ))
        }
        d.deserialize_any(Visit::<T, R>(std::marker::PhantomData))
            .map(|n| Whole(n, std::marker::PhantomData))
    }
}

fn whole<'de, D, T, R>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
    R: WholeRange,
{
    Whole::<T, R>::deserialize(d).map(|w| w.0)
}

fn some_whole<'de, D, T, R>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
    R: WholeRange,
{
    Option::<Whole<T, R>>::deserialize(d).map(|o| o.map(|w| w.0))
}

/// A submission: a training run, a batch job or an inference service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Optional name, unique among the tenant's jobs (a second submission of the same name
    /// is refused with 409, so retrying a submission never creates it twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "kind_by_name")]
    pub kind: JobKind,
    /// Admins only: the tenant (team) the job is for. Other tokens submit for their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Gang size (training, batch) or accelerators per replica (inference).
    #[serde(deserialize_with = "whole::<_, u32, Accelerators>")]
    pub accelerators: u32,
    /// Training only: the smallest gang an elastic run accepts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole::<_, u32, Accelerators>"
    )]
    pub min_accelerators: Option<u32>,
    /// Higher runs first; the team's default priority from the fleet when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole::<_, i32, Priority>"
    )]
    pub priority: Option<i32>,
    /// Accelerator types accepted (catalog names, e.g. "H100"); empty = any.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub accelerator_types: Vec<String>,
    /// Clusters accepted; empty = any.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub clusters: Vec<String>,
    /// Training and batch: wall-clock seconds of work on the full gang.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Inference only: the replica range.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub replicas: Option<ReplicaRange>,
    /// What each rank (training, batch) or replica (inference) runs, on backends that run
    /// real work (node agents, Slurm). Absent: the dry-run backend simulates the work, and a
    /// Slurm cluster runs its configured command.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_or_null"
    )]
    pub command: Option<JobCommand>,
    /// Training and batch: how often a run whose processes fail is restarted (from its last
    /// checkpoint) before the job ends as failed. Default 3. Lost nodes do not count.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_whole::<_, u32, Retries>"
    )]
    pub max_retries: Option<u32>,
}

/// Default of [`SubmitRequest::max_retries`].
pub const DEFAULT_MAX_RETRIES: u32 = 3;
const MAX_RETRIES: u32 = 1000;
const MAX_ARGV: usize = 256;
const MAX_ENV: usize = 256;
const MAX_ARG_BYTES: usize = 4096;

/// A program and how to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCommand {
    /// Program and arguments (the program is looked up in `PATH` when it has no `/`).
    pub argv: Vec<String>,
    /// Extra environment. Switchyard's own variables (`RANK`, `SWITCHYARD_*` …) win over it.
    #[serde(
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty",
        deserialize_with = "variables_once"
    )]
    pub env: std::collections::BTreeMap<String, String>,
    /// Directory to start in (the agent's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// `kind` as one of its names, a string: serde would also take an enum written as a map
/// (`{"batch": null}`).
fn kind_by_name<'de, D>(d: D) -> Result<JobKind, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct KindName;
    impl serde::de::Visitor<'_> for KindName {
        type Value = JobKind;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("one of its names as a string: training, batch or inference")
        }
        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<JobKind, E> {
            match name {
                "training" => Ok(JobKind::Training),
                "batch" => Ok(JobKind::Batch),
                "inference" => Ok(JobKind::Inference),
                other => Err(E::unknown_variant(
                    other,
                    &["training", "batch", "inference"],
                )),
            }
        }
    }
    d.deserialize_str(KindName)
}

/// An optional field that is an object, or null (absent): serde would also read a struct from
/// an array of its fields in order (`"replicas": [1, 2]` as min and max).
fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectOrNull<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectOrNull<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            // The fields are read through the caller's map, so errors still name their path.
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(ObjectOrNull(std::marker::PhantomData))
}

/// A list that may be given as `null`, which means what leaving it out means (empty), as
/// `null` does for the submission's optional values.
fn null_as_empty<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `command.env` as a map whose every name is given once: JSON allows a key twice, and
/// keeping the last value would drop the other without a word. `null` is no variables, as
/// leaving `env` out is.
fn variables_once<'de, D>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<VariablesOnce>::deserialize(d)?.map_or_else(Default::default, |v| v.0))
}

/// `command.env` read by `variables_once`'s rule.
struct VariablesOnce(std::collections::BTreeMap<String, String>);

impl<'de> Deserialize<'de> for VariablesOnce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(VariablesOnce(Default::default()))
    }
}

impl<'de> serde::de::Visitor<'de> for VariablesOnce {
    type Value = VariablesOnce;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of environment variable names to string values")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<Self, A::Error> {
        while let Some((name, value)) = map.next_entry::<String, String>()? {
            if self.0.contains_key(&name) {
                return Err(serde::de::Error::custom(format!(
                    "command.env names `{}` twice",
                    name.chars().take(64).collect::<String>()
                )));
            }
            self.0.insert(name, value);
        }
        Ok(self)
    }
}

impl JobCommand {
    fn check(&self) -> Result<(), Refusal> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(invalid("command.argv needs at least the program to run"));
        }
        if self.argv.len() > MAX_ARGV || self.env.len() > MAX_ENV {
            return Err(invalid(format!(
                "command takes at most {MAX_ARGV} arguments and {MAX_ENV} environment variables"
            )));
        }
        let too_long = |s: &str| s.len() > MAX_ARG_BYTES || s.contains('\0');
        if let Some(i) = self.argv.iter().position(|a| too_long(a)) {
            return Err(invalid(format!(
                "command.argv[{i}] is longer than {MAX_ARG_BYTES} bytes or contains a NUL byte"
            )));
        }
        for (k, v) in &self.env {
            let valid = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if k.len() > 256 {
                return Err(invalid(format!(
                    "command.env: the variable name `{}…` is {} bytes long; names are at most 256",
                    k.chars().take(64).collect::<String>(),
                    k.len()
                )));
            }
            if !valid {
                return Err(invalid(format!(
                    "command.env: `{}` is not a valid variable name (letters, digits and _, not starting with a digit)",
                    k.chars().take(64).collect::<String>()
                )));
            }
            if too_long(v) {
                return Err(invalid(format!(
                    "command.env.{k} is longer than {MAX_ARG_BYTES} bytes or contains a NUL byte"
                )));
            }
        }
        if let Some(d) = &self.working_dir
            && (d.is_empty() || too_long(d))
        {
            return Err(invalid(format!(
                "command.working_dir must be a path of 1 to {MAX_ARG_BYTES} bytes without NUL \
                 bytes (it is {})",
                if d.is_empty() {
                    "empty".to_owned()
                } else if d.contains('\0') {
                    "a path with a NUL byte".to_owned()
                } else {
                    format!("{} bytes long", d.len())
                }
            )));
        }
        Ok(())
    }
}

/// An inference service's replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaRange {
    #[serde(deserialize_with = "whole::<_, u32, ReplicaCount>")]
    pub min: u32,
    #[serde(deserialize_with = "whole::<_, u32, ReplicaCount>")]
    pub max: u32,
}

/// `POST /v1/jobs/{id}/scale`: an inference service's wanted replica count, within the
/// `replicas = { min, max }` it was submitted with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    pub replicas: i64,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub tenant: String,
    pub kind: String,
    /// pending, running, done, failed, cancelled or rejected.
    pub state: String,
    /// Why the job is where it is ("waiting for 512 free accelerators …").
    pub reason: String,
    pub priority: i64,
    pub accelerators: i64,
    /// The cluster it runs on or last ran on.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Accelerators it holds now.
    pub allocated: i64,
    pub restarts: i64,
    pub cancel_requested: bool,
    /// Inference services: the replica count last asked for with `POST /v1/jobs/{id}/scale`
    /// (absent: never asked; the service runs its submitted minimum). The replicas serving now
    /// are `allocated / accelerators`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_wanted: Option<i64>,
    pub submitted_ms: i64,
    #[serde(default)]
    pub started_ms: Option<i64>,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// The submission as accepted.
    pub spec: serde_json::Value,
}

impl From<&JobRecord> for Job {
    fn from(r: &JobRecord) -> Self {
        Job {
            id: r.id.clone(),
            name: r.name.clone(),
            tenant: r.tenant.clone(),
            kind: r.kind.clone(),
            state: r.state.as_str().to_owned(),
            reason: r.reason.clone(),
            priority: r.priority,
            accelerators: r.accelerators,
            cluster: r.cluster.clone(),
            allocated: r.allocated,
            restarts: r.restarts,
            cancel_requested: r.cancel_requested,
            replicas_wanted: r.replicas_wanted,
            submitted_ms: r.submitted_ms,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            spec: serde_json::from_str(&r.spec).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One page of jobs; `next` is the cursor for the following page (`after=`), absent at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<Job>,
    #[serde(default)]
    pub next: Option<String>,
}

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's number among the job's events, from 1: pass the last one seen as `after`.
    #[serde(default)]
    pub cursor: i64,
    pub at_ms: i64,
    /// submitted, waiting, started, replica_added, preempted, restarted, finished, cancelled, …
    pub kind: String,
    #[serde(default)]
    pub cluster: Option<String>,
    pub message: String,
}

/// `/v1/jobs/{id}/events`: a page of a job's events in order, with where it stands now
/// (`reason` answers "why is it pending"). `next` (the last event's cursor) is there when the
/// page is full, so more events may wait: pass it as `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvents {
    pub job: String,
    pub state: String,
    pub reason: String,
    pub events: Vec<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// Default page of `/v1/jobs/{id}/events`.
pub const DEFAULT_EVENT_PAGE: i64 = 1000;

/// One output line of one of a job's processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The line's number among the job's stored lines, from 1 (increasing; gaps where an agent
    /// sent a line twice): pass the last one seen as `after`.
    pub cursor: i64,
    /// 1 for the first run of the job, one more for every restart.
    pub attempt: i64,
    pub rank: i64,
    /// The replica of an inference service that wrote it (`EPOCH.N`, as its processes'
    /// assignment ids name it); absent for training and batch ranks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// stdout or stderr.
    pub stream: String,
    /// When the node's agent read it, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The text, without its newline.
    pub line: String,
}

/// `/v1/jobs/{id}/logs`: a page of a job's output in cursor order. `next` (the last line's
/// cursor) is there when the page is full, so more lines may wait: pass it as `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLogs {
    pub job: String,
    pub lines: Vec<LogEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// Default page of `/v1/jobs/{id}/logs`.
pub const DEFAULT_LOG_PAGE: i64 = 1000;

/// A cluster and what runs on it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: String,
    pub provider: String,
    pub region: String,
    pub accelerator: String,
    pub nodes: u32,
    pub accelerators: u64,
    pub busy: i64,
    pub running_jobs: i64,
}

/// The fleet as the server schedules it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub name: String,
    pub clusters: Vec<ClusterState>,
}

/// A quota from the fleet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaView {
    /// `None`: fleet-wide.
    #[serde(default)]
    pub cluster: Option<String>,
    pub accelerators: u64,
    #[serde(default)]
    pub borrowing_limit: Option<u64>,
}

/// A tenant (team): its quotas and what it uses now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    pub tenant: String,
    #[serde(default)]
    pub organisation: Option<String>,
    pub pending: i64,
    pub running: i64,
    pub allocated: i64,
    pub quotas: Vec<QuotaView>,
}

/// `/v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<TenantState>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable: invalid_json, invalid_request, unauthorized, forbidden, not_found,
    /// method_not_allowed, conflict, cluster_full, quota_exceeded, unschedulable, too_large, unavailable, internal.
    pub code: String,
    pub message: String,
}

/// Why a submission was refused: (HTTP status, code, message).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 422,
        code: "invalid_request",
        message: message.into(),
    }
}

/// Whether `name` may name a job or a tenant: 1 to 128 letters, digits, `-`, `_` and `.`.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_name(what: &str, name: &str) -> Result<(), Refusal> {
    if is_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} `{}` must be 1 to 128 characters of letters, digits, `-`, `_` and `.`",
            name.chars().take(140).collect::<String>()
        )))
    }
}

impl SubmitRequest {
    /// Checks the request on its own (no fleet): sizes, ranges, which fields go with which
    /// kind. Returns the scheduler's job spec for `tenant` with id `id`.
    pub fn to_spec(
        &self,
        id: &str,
        tenant: &str,
        default_priority: i32,
    ) -> Result<JobSpec, Refusal> {
        if let Some(n) = &self.name {
            check_name("name", n)?;
        }
        check_name("tenant", tenant)?;
        if self.accelerators == 0 {
            return Err(invalid("accelerators must be at least 1"));
        }
        if let Some(c) = &self.command {
            c.check()?;
        }
        if let Some(r) = self.max_retries {
            if self.kind == JobKind::Inference {
                return Err(invalid(
                    "max_retries is for training and batch jobs; a service's replicas are restarted whenever they die",
                ));
            }
            if r > MAX_RETRIES {
                return Err(invalid(format!(
                    "max_retries = {r} is out of range: from 0 to {MAX_RETRIES}"
                )));
            }
        }
        if self.accelerators > MAX_ACCELERATORS {
            return Err(invalid(format!(
                "accelerators = {} is absurd: at most {MAX_ACCELERATORS}",
                self.accelerators
            )));
        }
        if let Some(p) = self.priority
            && !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&p)
        {
            return Err(invalid(format!(
                "priority = {p} is out of range: from -{MAX_PRIORITY} to {MAX_PRIORITY}"
            )));
        }
        if self.accelerator_types.len() > MAX_LIST_ENTRIES || self.clusters.len() > MAX_LIST_ENTRIES
        {
            return Err(invalid(format!(
                "accelerator_types and clusters take at most {MAX_LIST_ENTRIES} entries"
            )));
        }
        for (list, field) in [
            (&self.accelerator_types, "accelerator_types"),
            (&self.clusters, "clusters"),
        ] {
            if let Some((first, i, twice)) = list.iter().enumerate().find_map(|(i, x)| {
                list[..i]
                    .iter()
                    .position(|y| y == x)
                    .map(|first| (first, i, x))
            }) {
                return Err(invalid(format!(
                    "{field} names `{}` twice (entries {first} and {i})",
                    twice.chars().take(64).collect::<String>()
                )));
            }
        }
        let mut canonical: Vec<&'static str> = Vec::with_capacity(self.accelerator_types.len());
        for (i, t) in self.accelerator_types.iter().enumerate() {
            let Some(a) = switchyard_core::lookup_accelerator(t) else {
                return Err(invalid(format!(
                    "unknown accelerator type `{}`; known: {}",
                    t.chars().take(64).collect::<String>(),
                    switchyard_core::accelerator::names().join(", ")
                )));
            };
            if let Some(first) = canonical.iter().position(|&c| c == a.name) {
                return Err(invalid(format!(
                    "accelerator_types names {} twice: `{}` (entry {first}) and `{t}` (entry {i}) \
                     are the same accelerator",
                    a.name, self.accelerator_types[first]
                )));
            }
            canonical.push(a.name);
        }
        let (work, replicas) = match self.kind {
            JobKind::Training | JobKind::Batch => {
                if self.replicas.is_some() {
                    return Err(invalid(format!(
                        "replicas is for inference services, not {} jobs",
                        self.kind.as_str()
                    )));
                }
                let Some(d) = self.duration_s else {
                    return Err(invalid(format!(
                        "a {} job needs duration_s (seconds of work on its full gang)",
                        self.kind.as_str()
                    )));
                };
                if !d.is_finite() || d <= 0.0 || d > MAX_DURATION_S {
                    return Err(invalid(format!(
                        "duration_s = {} must be above 0 and at most {MAX_DURATION_S} (366 days)",
                        if d.abs() >= 1e9 {
                            format!("{d:e}")
                        } else {
                            format!("{d}")
                        }
                    )));
                }
                (
                    Work::Duration {
                        seconds: d,
                        by_accelerator: Default::default(),
                    },
                    None,
                )
            }
            JobKind::Inference => {
                if self.duration_s.is_some() {
                    return Err(invalid(
                        "an inference service runs until cancelled: drop duration_s",
                    ));
                }
                let Some(r) = &self.replicas else {
                    return Err(invalid(
                        "an inference service needs replicas = { min, max }",
                    ));
                };
                if r.min == 0 || r.min > r.max || r.max > MAX_REPLICAS {
                    return Err(invalid(format!(
                        "replicas must satisfy 1 <= min <= max <= {MAX_REPLICAS} (got min {}, max {})",
                        r.min, r.max
                    )));
                }
                (
                    Work::Open,
                    Some(Replicas {
                        min: r.min,
                        max: r.max,
                        capacity_per_replica: 1.0,
                        load: None,
                    }),
                )
            }
        };
        if let Some(m) = self.min_accelerators {
            if self.kind != JobKind::Training {
                return Err(invalid(
                    "min_accelerators is for (elastic) training runs only",
                ));
            }
            if m == 0 || m > self.accelerators {
                return Err(invalid(format!(
                    "min_accelerators = {m} must be between 1 and accelerators ({})",
                    self.accelerators
                )));
            }
        }
        Ok(JobSpec {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            kind: self.kind,
            priority: self.priority.unwrap_or(default_priority),
            submit_s: 0.0,
            accelerators: self.accelerators,
            min_accelerators: self.min_accelerators,
            replicas,
            accelerator_types: self.accelerator_types.clone(),
            clusters: self.clusters.clone(),
            work,
        })
    }

    /// Checks the request against the fleet: the clusters it names exist.
    pub fn check_fleet(&self, fleet: &Fleet) -> Result<(), Refusal> {
        for c in &self.clusters {
            if fleet.cluster(c).is_none() {
                let names: Vec<&str> = fleet.clusters.iter().map(|c| c.name.as_str()).collect();
                return Err(invalid(format!(
                    "no cluster `{}` in fleet {}; clusters: {}",
                    c.chars().take(64).collect::<String>(),
                    fleet.name,
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Quota at admission: a job larger than its team's or organisation's hard cap
    /// (fleet-wide quota plus borrowing limit) could never start, so it is refused.
    pub fn check_quota(&self, fleet: &Fleet, tenant: &str) -> Result<(), Refusal> {
        if let Some((org, team)) = fleet.team(tenant) {
            // A service holds its minimum replicas at all times; a gang its minimum size.
            let (need, what) = match &self.replicas {
                Some(r) => (
                    u64::from(self.accelerators) * u64::from(r.min),
                    format!(
                        "the service's {} replicas of {} accelerators need {}",
                        r.min,
                        self.accelerators,
                        u64::from(self.accelerators) * u64::from(r.min)
                    ),
                ),
                None => {
                    let n = u64::from(self.min_accelerators.unwrap_or(self.accelerators));
                    (n, format!("the job needs {n}"))
                }
            };
            let caps = team
                .quotas
                .iter()
                .map(|q| (q, "team", team.name.as_str()))
                .chain(
                    org.quotas
                        .iter()
                        .map(|q| (q, "organisation", org.name.as_str())),
                );
            for (q, level, who) in caps {
                if q.cluster.is_none()
                    && let Some(limit) = q.borrowing_limit
                {
                    let cap = q.accelerators + limit;
                    if need > cap {
                        return Err(Refusal {
                            status: 403,
                            code: "quota_exceeded",
                            message: format!(
                                "{what} accelerators but {level} {who} may hold at most {cap} \
                                 (quota {} + borrowing limit {limit})",
                                q.accelerators
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
