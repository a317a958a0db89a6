//! Switchyard's durable store: jobs, their events and logs, API tokens, the node registry and
//! the scheduling lease.
//!
//! One interface, split into a read half ([`StoreRead`]) and a write half ([`StoreWrite`]),
//! with two implementations sharing the same SQL: [`SqliteStore`] (embedded, the default, WAL
//! mode, created on first start) and [`PgStore`] (PostgreSQL, for several control-plane
//! replicas). [`connect`] picks one from a URL and applies the migrations of that database.
//!
//! Everything the server acknowledges has been committed here first. The leader's scheduling
//! decisions are written with [`StoreWrite::apply`], which is fenced by the lease term: a
//! replica that lost the lease cannot write decisions any more.

mod migrate;
mod model;
mod sql;

use std::future::Future;

pub use model::{
    Batch, ClusterUsage, EventQuery, EventRecord, JobFilter, JobRecord, JobState, JobUpdate,
    LeaderInfo, Lease, LogLine, LogQuery, LogRecord, NewEvent, NewJob, NodeDrain, NodeRecord,
    NodeRegistration, NodeState, Principal, RanOn, RankPlacement, ReplicaPlacement, TenantUsage,
    TokenRecord, is_replica_name, replica_of_assignment,
};
pub use sql::{PgStore, SqliteStore};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL `{0}`: expected sqlite://PATH (e.g. sqlite://switchyard.db) or postgres://USER@HOST/DB"
    )]
    Url(String),
    #[error(
        "there is no database at {0}: check --db (a server creates its SQLite file on first start, as does `switchyard token create`)"
    )]
    NoDatabase(String),
    #[error("cannot open the SQLite database at {path}: {why}")]
    CannotOpen { path: String, why: String },
    #[error("a job named `{name}` already exists for tenant `{tenant}`")]
    Conflict { tenant: String, name: String },
    #[error("this server no longer holds the scheduling lease (another replica took over)")]
    LostLease,
    #[error(
        "the database's schema is version {found}, newer than this binary's {known}; upgrade switchyard"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "cluster `{cluster}` is full: all {slots} of its node slots (its node count in the fleet) are held by other hosts, none of them lost"
    )]
    ClusterFull { cluster: String, slots: i64 },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error(
        "invalid PostgreSQL URL `{url}`: {why} (expected postgres://USER:PASSWORD@HOST:PORT/DB)"
    )]
    BadUrl { url: String, why: String },
    #[error("cannot connect to the database at {at}: {why}")]
    Unreachable { at: String, why: String },
    #[error(
        "the SQLite database file {path} {why} while this server runs: what it wrote since is in \
         the old file only; nothing more is written (restart the server on the file as it is \
         now, or put the old one back)"
    )]
    FileGone { path: String, why: String },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// Reads. Every job read takes the tenant it is made for (`None` only for admins and the
/// scheduler): another tenant's job is simply not found.
pub trait StoreRead: Send + Sync {
    /// A round trip to the database that reads the schema (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// This database's deployment id: random, made once with the schema, the same for every
    /// server on the database (12 lowercase hex digits).
    fn deployment_id(&self) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// The scheduling lease as written last (its holder may have let it run out).
    fn current_leader(&self) -> impl Future<Output = Result<LeaderInfo, StoreError>> + Send;
    /// Who holds the token whose SHA-256 is `hash`.
    fn principal(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<Principal>, StoreError>> + Send;
    /// Every token, oldest first.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;
    fn get_job(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
    /// A tenant's job by its name.
    fn job_by_name(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
    /// Jobs in submission order (or the latest first), after `filter.after`, at most
    /// `filter.limit`.
    fn list_jobs(
        &self,
        filter: &JobFilter,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
    /// A page of a job's events in order: at most `limit` numbered above `after`; `None` when
    /// the job is not found for this tenant.
    fn events(
        &self,
        id: &str,
        tenant: Option<&str>,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Option<Vec<EventRecord>>, StoreError>> + Send;
    /// Whether `job_id` has an event of `kind` on `cluster`, recorded before `before_ms`, whose
    /// message starts with `prefix` (a `started` event says `attempt N: …`).
    fn has_event(
        &self,
        query: &EventQuery<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Jobs the scheduler has not taken in yet, in submission order.
    fn unseen_jobs(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
    /// Pending and running jobs in submission order (what a new leader rebuilds from).
    fn active_jobs(&self) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
    /// Ids of active jobs whose cancellation was requested.
    fn cancel_requests(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Active inference services whose replica count was asked for
    /// ([`StoreWrite::request_scale`]): `(id, replicas wanted)` in submission order.
    fn scale_requests(&self)
    -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
    /// Pending/running counts and allocated accelerators per tenant (active jobs only).
    fn tenant_usage(&self) -> impl Future<Output = Result<Vec<TenantUsage>, StoreError>> + Send;
    /// Running jobs and allocated accelerators per cluster.
    fn cluster_usage(&self) -> impl Future<Output = Result<Vec<ClusterUsage>, StoreError>> + Send;
    /// Every registered node, by cluster and slot.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeRecord>, StoreError>> + Send;
    /// The drained nodes' ids with why and since when (read by the leader every pass).
    fn drained_nodes(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, NodeDrain)>, StoreError>> + Send;
    /// A job's log lines in cursor order (not tenant-scoped: check the job first).
    fn logs(
        &self,
        query: &LogQuery,
    ) -> impl Future<Output = Result<Vec<LogRecord>, StoreError>> + Send;
}

/// Writes. Each call is one transaction, committed when the future resolves `Ok`.
pub trait StoreWrite: Send + Sync {
    fn insert_token(
        &self,
        hash: &str,
        tenant: &str,
        admin: bool,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a node agent's token (fleet-wide: no tenant, not admin, `agent` set).
    fn insert_agent_token(
        &self,
        hash: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes the token whose SHA-256 is `hash`; whether there was one.
    fn delete_token(&self, hash: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Inserts a submitted job and its `submitted` event; [`StoreError::Conflict`] when the
    /// tenant already has a job of that name.
    fn insert_job(
        &self,
        job: &NewJob,
    ) -> impl Future<Output = Result<JobRecord, StoreError>> + Send;
    /// Marks an active job for cancellation (the leader carries it out). Returns the job as
    /// it now stands, or `None` when not found for this tenant.
    fn request_cancel(
        &self,
        id: &str,
        tenant: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
    /// Sets an active inference service's wanted replica count (the leader applies it; the
    /// caller checks it against the service's range) and records a `scale_requested` event
    /// when it changes. Jobs that are not active services are left as they are. Returns the
    /// job as it now stands, or `None` when not found for this tenant.
    fn request_scale(
        &self,
        id: &str,
        tenant: Option<&str>,
        replicas: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;
    /// Writes the leader's decisions, fenced by `lease`: fails with
    /// [`StoreError::LostLease`] (writing nothing) when another replica holds the lease now.
    fn apply(
        &self,
        lease: &Lease,
        batch: &Batch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes the scheduling lease if it is free or expired, or renews it if `holder` has it,
    /// recording the `fleet` it schedules. Taking it over from another holder starts a new term.
    fn acquire_lease(
        &self,
        holder: &str,
        fleet: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;
    /// Gives the lease up (on a clean shutdown) so that another replica takes over at once.
    fn release_lease(&self, lease: &Lease) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Registers a node, idempotently per (cluster, hostname): a known host keeps its id and
    /// slot, its fields are updated, it is ready and `heartbeat_ms` is now. A new host gets a
    /// new id and the lowest slot of `0..slots` no other host of the cluster holds; when every
    /// slot is held, the slot of the cluster's longest-lost node (whose record goes); else
    /// [`StoreError::ClusterFull`].
    fn register_node(
        &self,
        reg: &NodeRegistration,
    ) -> impl Future<Output = Result<NodeRecord, StoreError>> + Send;
    /// Records a heartbeat (a lost node is ready again). `None`: no such node.
    fn node_heartbeat(
        &self,
        id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<NodeRecord>, StoreError>> + Send;
    /// Drains a node (`Some`: it takes no new work, with why and since when) or resumes it
    /// (`None`); a node drained again keeps the new reason and time. Returns the node as
    /// stored now; `None`: no such node.
    fn set_node_drain(
        &self,
        id: &str,
        drain: Option<&NodeDrain>,
    ) -> impl Future<Output = Result<Option<NodeRecord>, StoreError>> + Send;
    /// Marks a node lost (its slot stays its own). Unknown ids change nothing.
    fn mark_node_lost(
        &self,
        id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores log lines in one transaction; a line already stored with the same
    /// (assignment_id, stream, seq) is skipped (agents retry batches). Returns how many were new.
    /// A NUL in a line is kept as U+2400 (␀): PostgreSQL text cannot hold it.
    fn append_logs(
        &self,
        lines: &[LogLine],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Both halves.
pub trait Store: StoreRead + StoreWrite + Clone + 'static {}
impl<T: StoreRead + StoreWrite + Clone + 'static> Store for T {}

/// A store of either kind, chosen at start from the database URL.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens the database at `url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://…`,
/// `postgresql://…`), creating a SQLite file on first use, and applies the migrations.
/// `url` with its password, if it has one, replaced by `***`: what error messages show.
pub fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    // The last '@' ends the user information (a password may hold '@' itself).
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end],
        &authority[..colon],
        &url[scheme_end + at..]
    )
}

pub async fn connect(url: &str) -> Result<AnyStore, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(AnyStore::Postgres(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Url(redacted_url(url)))
    }
}

/// Like [`connect`], but a SQLite file that is not there is [`StoreError::NoDatabase`]: for
/// commands that only read or change an existing server's database, where a mistyped path
/// must not quietly become a new, empty one.
pub async fn connect_existing(url: &str) -> Result<AnyStore, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(AnyStore::Sqlite(SqliteStore::connect_existing(url).await?))
    } else {
        connect(url).await
    }
}

impl AnyStore {
    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl StoreRead for AnyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.ping().await)
    }
    async fn deployment_id(&self) -> Result<String, StoreError> {
        delegate!(self, s => s.deployment_id().await)
    }
    async fn current_leader(&self) -> Result<LeaderInfo, StoreError> {
        delegate!(self, s => s.current_leader().await)
    }
    async fn principal(&self, hash: &str) -> Result<Option<Principal>, StoreError> {
        delegate!(self, s => s.principal(hash).await)
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        delegate!(self, s => s.tokens().await)
    }
    async fn get_job(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<JobRecord>, StoreError> {
        delegate!(self, s => s.get_job(id, tenant).await)
    }
    async fn job_by_name(&self, tenant: &str, name: &str) -> Result<Option<JobRecord>, StoreError> {
        delegate!(self, s => s.job_by_name(tenant, name).await)
    }
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        delegate!(self, s => s.list_jobs(filter).await)
    }
    async fn events(
        &self,
        id: &str,
        tenant: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Option<Vec<EventRecord>>, StoreError> {
        delegate!(self, s => s.events(id, tenant, after, limit).await)
    }
    async fn has_event(&self, query: &EventQuery<'_>) -> Result<bool, StoreError> {
        delegate!(self, s => s.has_event(query).await)
    }
    async fn unseen_jobs(&self, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        delegate!(self, s => s.unseen_jobs(limit).await)
    }
    async fn active_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        delegate!(self, s => s.active_jobs().await)
    }
    async fn cancel_requests(&self) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.cancel_requests().await)
    }
    async fn scale_requests(&self) -> Result<Vec<(String, i64)>, StoreError> {
        delegate!(self, s => s.scale_requests().await)
    }
    async fn tenant_usage(&self) -> Result<Vec<TenantUsage>, StoreError> {
        delegate!(self, s => s.tenant_usage().await)
    }
    async fn cluster_usage(&self) -> Result<Vec<ClusterUsage>, StoreError> {
        delegate!(self, s => s.cluster_usage().await)
    }
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        delegate!(self, s => s.nodes().await)
    }
    async fn drained_nodes(&self) -> Result<Vec<(String, NodeDrain)>, StoreError> {
        delegate!(self, s => s.drained_nodes().await)
    }
    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        delegate!(self, s => s.logs(query).await)
    }
}

impl StoreWrite for AnyStore {
    async fn insert_token(
        &self,
        hash: &str,
        tenant: &str,
        admin: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.insert_token(hash, tenant, admin, now_ms).await)
    }
    async fn insert_agent_token(&self, hash: &str, now_ms: i64) -> Result<(), StoreError> {
        delegate!(self, s => s.insert_agent_token(hash, now_ms).await)
    }
    async fn delete_token(&self, hash: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_token(hash).await)
    }
    async fn insert_job(&self, job: &NewJob) -> Result<JobRecord, StoreError> {
        delegate!(self, s => s.insert_job(job).await)
    }
    async fn request_cancel(
        &self,
        id: &str,
        tenant: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<JobRecord>, StoreError> {
        delegate!(self, s => s.request_cancel(id, tenant, now_ms).await)
    }
    async fn request_scale(
        &self,
        id: &str,
        tenant: Option<&str>,
        replicas: i64,
        now_ms: i64,
    ) -> Result<Option<JobRecord>, StoreError> {
        delegate!(self, s => s.request_scale(id, tenant, replicas, now_ms).await)
    }
    async fn apply(&self, lease: &Lease, batch: &Batch) -> Result<(), StoreError> {
        delegate!(self, s => s.apply(lease, batch).await)
    }
    async fn acquire_lease(
        &self,
        holder: &str,
        fleet: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        delegate!(self, s => s.acquire_lease(holder, fleet, now_ms, ttl_ms).await)
    }
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        delegate!(self, s => s.release_lease(lease).await)
    }
    async fn register_node(&self, reg: &NodeRegistration) -> Result<NodeRecord, StoreError> {
        delegate!(self, s => s.register_node(reg).await)
    }
    async fn node_heartbeat(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<NodeRecord>, StoreError> {
        delegate!(self, s => s.node_heartbeat(id, now_ms).await)
    }
    async fn set_node_drain(
        &self,
        id: &str,
        drain: Option<&NodeDrain>,
    ) -> Result<Option<NodeRecord>, StoreError> {
        delegate!(self, s => s.set_node_drain(id, drain).await)
    }
    async fn mark_node_lost(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        delegate!(self, s => s.mark_node_lost(id, now_ms).await)
    }
    async fn append_logs(&self, lines: &[LogLine]) -> Result<u64, StoreError> {
        delegate!(self, s => s.append_logs(lines).await)
    }
}

/// The SHA-256 of `text`, hex (a fingerprint, e.g. of a fleet).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// The SHA-256 of a token, hex: what the store keeps instead of the token.
pub fn hash_token(token: &str) -> String {
    sha256_hex(token)
}

/// A new API token: `sy_` and 64 hex digits (256 random bits from the operating system).
pub fn new_token() -> Result<String, StoreError> {
    Ok(format!("sy_{}", hex(&random_bytes::<32>()?)))
}

/// A new job id: `j-` and 16 hex digits (64 random bits).
pub fn new_job_id() -> Result<String, StoreError> {
    Ok(format!("j-{}", hex(&random_bytes::<8>()?)))
}

/// A new node id: `n-` and 12 hex digits (48 random bits).
pub fn new_node_id() -> Result<String, StoreError> {
    Ok(format!("n-{}", hex(&random_bytes::<6>()?)))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Helpers for tests that need a database of their own (the store's suite, the server's
/// integration tests).
pub mod testing {
    use sqlx::Connection as _;

    use crate::StoreError;

    /// The variable naming the PostgreSQL server tests use (a URL whose role may create
    /// databases, e.g. `postgres://switchyard:switchyard@127.0.0.1/switchyard_test`).
    pub const POSTGRES_URL_VAR: &str = "SWITCHYARD_TEST_POSTGRES_URL";

    /// The PostgreSQL URL tests use, or `None` (after printing why those tests are skipped).
    pub fn postgres_url() -> Option<String> {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!(
                    "SKIPPED: {POSTGRES_URL_VAR} is not set, so the PostgreSQL tests do not run \
                     (.ci/run sets it after starting PostgreSQL)"
                );
                None
            }
        }
    }

    /// Creates a new, empty database on the server of `base_url` and returns its URL.
    pub async fn fresh_postgres_database(base_url: &str) -> Result<String, StoreError> {
        let name = format!("sy_test_{}", &crate::new_job_id()?[2..]);
        let mut conn = sqlx::PgConnection::connect(base_url).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let (head, tail) = match base_url.split_once('?') {
            Some((h, t)) => (h, format!("?{t}")),
            None => (base_url, String::new()),
        };
        let root = head.rsplit_once('/').map_or(head, |(r, _)| r);
        Ok(format!("{root}/{name}{tail}"))
    }

    /// A batch job of 8 accelerators for `tenant`, as a submission stores it.
    pub fn batch_job(id: &str, tenant: &str, spec: &str, submitted_ms: i64) -> crate::NewJob {
        crate::NewJob {
            id: id.into(),
            tenant: tenant.into(),
            name: None,
            kind: "batch".into(),
            priority: 0,
            accelerators: 8,
            spec: spec.into(),
            reason: "queued".into(),
            submitted_ms,
        }
    }

    /// A new SQLite database file in a new temporary directory.
    pub fn fresh_sqlite_url() -> Result<String, StoreError> {
        let dir = std::env::temp_dir().join(format!("switchyard-test-{}", crate::new_job_id()?));
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        Ok(format!("sqlite://{}", dir.join("switchyard.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn passwords_are_redacted_from_urls_and_nothing_else_changes() {
        for (url, shown) in [
            (
                "postgres://u:secret@db:5432/sy",
                "postgres://u:***@db:5432/sy",
            ),
            ("postgres://u:p@ss@db/sy?x=1", "postgres://u:***@db/sy?x=1"),
            ("postgres://u@db/sy", "postgres://u@db/sy"),
            ("postgres://db:5432/sy", "postgres://db:5432/sy"),
            ("mysql://root:pw@h/x", "mysql://root:***@h/x"),
            ("sqlite://switchyard.db", "sqlite://switchyard.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }
}
