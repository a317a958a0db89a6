//! The fleet: providers and their contracts, clusters and their topology, tenants and quotas.
//!
//! A fleet is written in TOML (docs/fleet.md) and loaded by [`Fleet::from_toml`], which
//! validates everything and reports the file, line and field of the first problem. The types
//! here are the validated form every other crate uses.

mod load;

use serde::Serialize;

use crate::accelerator::Accelerator;

pub use load::FleetError;

/// The built-in default fleet, identical to `examples/fleets/default.toml`.
pub const DEFAULT_FLEET_TOML: &str = include_str!("default_fleet.toml");

/// The built-in `colossus-1-expanded` fleet (about 200,000 Hopper GPUs), identical to
/// `examples/fleets/colossus-1-expanded.toml`.
pub const COLOSSUS_EXPANDED_FLEET_TOML: &str = include_str!("colossus_expanded_fleet.toml");

/// Names of the built-in fleets, for `--fleet NAME`.
pub const BUILTIN_FLEETS: &[&str] = &["default", "colossus-1-expanded"];

/// A validated fleet description.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    pub name: String,
    pub providers: Vec<Provider>,
    pub clusters: Vec<Cluster>,
    pub tenants: Vec<Organisation>,
}

/// What kind of business a provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// A hyperscaler cloud (AWS, Google Cloud, …).
    Cloud,
    /// A third-party supercomputer sold by time (Colossus-class).
    Supercomputer,
    /// The lab's own machines.
    OnPremises,
}

/// A provider and the prices it charges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub contracts: Vec<Contract>,
}

/// A provider's terms for one accelerator type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contract {
    /// Canonical accelerator name.
    pub accelerator: String,
    /// Committed capacity, if any.
    pub reserved: Option<Reserved>,
    /// Price per accelerator-hour on demand, if the provider sells it that way.
    pub on_demand_price: Option<f64>,
    /// Price per accelerator-hour of spot/preemptible capacity, if offered.
    pub spot_price: Option<f64>,
}

/// Committed (reserved) capacity: paid for whether used or not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reserved {
    pub accelerators: u64,
    pub price: f64,
    pub term_months: u32,
}

/// How a cluster's capacity is bought, and so what it costs and whether it can be taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capacity {
    Reserved,
    OnDemand,
    /// Preemptible: the provider may take nodes back.
    Spot,
}

/// A level of the network hierarchy above the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelKind {
    /// Chips on one scale-up fabric (an NVLink domain, a Trn2 UltraServer, a TPU slice).
    ScaleUp,
    Rack,
    /// A block/pod/spine group of racks.
    Block,
    /// The whole cluster.
    Cluster,
}

impl LevelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LevelKind::ScaleUp => "scale_up",
            LevelKind::Rack => "rack",
            LevelKind::Block => "block",
            LevelKind::Cluster => "cluster",
        }
    }

    /// Units of this level in words, plural: "scale-up domains", "racks".
    pub fn units(self) -> &'static str {
        match self {
            LevelKind::ScaleUp => "scale-up domains",
            LevelKind::Rack => "racks",
            LevelKind::Block => "blocks",
            LevelKind::Cluster => "clusters",
        }
    }
}

/// One topology level: how many nodes one unit of it holds, and the bandwidth each accelerator
/// gets for traffic that stays inside one unit (per direction, GB/s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Level {
    pub kind: LevelKind,
    pub nodes: u32,
    pub gb_s: f64,
}

/// The network above the node, innermost level first; the last level is always the whole
/// cluster, and each level's `nodes` divides the next one's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    pub levels: Vec<Level>,
    /// Fraction of line rate collectives reach on the scale-out network under load
    /// (about 0.95 reported for Spectrum-X, about 0.6 for standard Ethernet).
    pub network_efficiency: f64,
}

impl Topology {
    pub fn level(&self, kind: LevelKind) -> Option<&Level> {
        self.levels.iter().find(|l| l.kind == kind)
    }

    /// Nodes in one scale-up domain.
    pub fn scale_up_nodes(&self) -> u32 {
        self.level(LevelKind::ScaleUp).map_or(1, |l| l.nodes)
    }

    /// The innermost level whose unit holds at least `nodes` nodes.
    pub fn smallest_level_holding(&self, nodes: u32) -> &Level {
        self.levels
            .iter()
            .find(|l| l.nodes >= nodes)
            .unwrap_or_else(|| {
                self.levels
                    .last()
                    .expect("a topology always has the cluster level")
            })
    }
}

/// A cluster: one accelerator type on one fabric at one provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub provider: String,
    pub region: String,
    #[serde(serialize_with = "accelerator_name")]
    pub accelerator: &'static Accelerator,
    pub nodes: u32,
    pub accelerators_per_node: u32,
    pub capacity: Capacity,
    pub topology: Topology,
    /// Mean time between failures of one node, hours.
    pub node_mtbf_hours: f64,
    /// Time a failed node is out, hours.
    pub repair_hours: f64,
    /// What the cluster's storage takes in at most, all writers together, GB/s
    /// (`checkpoint_write_gb_s`); `None`: not stated, each node writes at its own rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_write_gb_s: Option<f64>,
    /// How long a training run takes to restart here — be placed again, start its processes,
    /// load its checkpoint, warm up — in seconds (`restart_s`); `None`: not stated, the
    /// scheduler's default (5 minutes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_s: Option<f64>,
    /// What one accelerator-hour of this cluster costs under its provider's contract.
    pub price_per_accelerator_hour: f64,
    /// What runs placements on this cluster (`backend = "slurm"` in the fleet file).
    pub backend: ClusterBackend,
}

/// What runs placements on a cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ClusterBackend {
    /// Switchyard's own node agents (the default).
    #[default]
    Agents,
    /// An existing Slurm cluster, driven through its command-line tools or `slurmrestd`.
    Slurm(SlurmSettings),
}

/// How to reach and use a Slurm cluster (`[clusters.slurm]`, docs/slurm.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlurmSettings {
    /// The partition Switchyard's jobs go to.
    pub partition: String,
    /// `slurmrestd` base URL; `None` = the command-line tools on the server's host.
    pub rest_url: Option<String>,
    /// Environment variable holding the `slurmrestd` token (required with `rest_url`).
    pub token_env: Option<String>,
    /// Account to charge (`--account`), if the site requires one.
    pub account: Option<String>,
    /// Directory (shared with the compute nodes) for jobs' stdout/stderr.
    pub log_dir: Option<String>,
    /// Directory (shared with the compute nodes) for checkpoints, one sub-directory per job.
    pub checkpoint_dir: Option<String>,
    /// Shell command the batch script runs (e.g. `srun ./train.sh`); `None` = sleep for the
    /// run's expected duration (a placeholder workload).
    pub command: Option<String>,
}

fn accelerator_name<S: serde::Serializer>(
    a: &&'static Accelerator,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.name)
}

impl Cluster {
    pub fn accelerators(&self) -> u64 {
        u64::from(self.nodes) * u64::from(self.accelerators_per_node)
    }

    /// Dense BF16 peak of the whole cluster, PFLOP/s.
    pub fn peak_bf16_pflops(&self) -> f64 {
        self.accelerators() as f64 * self.accelerator.bf16_tflops / 1000.0
    }

    /// HBM of the whole cluster, TiB.
    pub fn hbm_tib(&self) -> f64 {
        self.accelerators() as f64 * self.accelerator.hbm_gib / 1024.0
    }

    /// Accelerators on one scale-up fabric: the scale-up level's nodes, but never more than
    /// the accelerator's fabric links (a 16-GPU H100 server holds two 8-GPU NVLink domains;
    /// PCIe cards are bridged in pairs at most, whatever the server holds).
    pub fn scale_up_accelerators(&self) -> u32 {
        (self.topology.scale_up_nodes() * self.accelerators_per_node)
            .min(self.accelerator.scale_up.domain)
            .max(1)
    }

    /// Failures per hour across `nodes` nodes of this cluster.
    pub fn failure_rate_per_hour(&self, nodes: u32) -> f64 {
        f64::from(nodes) / self.node_mtbf_hours
    }
}

/// A quota: how many accelerators a tenant is guaranteed, on one cluster or fleet-wide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quota {
    /// `None` = fleet-wide.
    pub cluster: Option<String>,
    pub accelerators: u64,
    /// How far above its quota the tenant may borrow idle capacity; `None` = unlimited.
    pub borrowing_limit: Option<u64>,
}

/// A team inside an organisation: jobs belong to teams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    /// Fleet-unique.
    pub name: String,
    /// Share weight inside its organisation.
    pub weight: f64,
    /// Default priority of the team's jobs.
    pub priority: i32,
    pub quotas: Vec<Quota>,
}

/// An organisation (a tenant): sees only its own jobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Organisation {
    pub name: String,
    /// Share weight across organisations.
    pub weight: f64,
    pub quotas: Vec<Quota>,
    pub teams: Vec<Team>,
}

impl Fleet {
    /// Parses and validates a fleet. `file` names the source in error messages.
    pub fn from_toml(text: &str, file: &str) -> Result<Fleet, FleetError> {
        load::load(text, file)
    }

    /// The built-in default fleet (a frontier lab on AWS, Google Cloud and Colossus).
    pub fn default_fleet() -> Fleet {
        Fleet::from_toml(DEFAULT_FLEET_TOML, "<built-in default fleet>")
            .expect("the built-in default fleet is valid (tested)")
    }

    /// The names [`Fleet::builtin`] knows.
    pub const BUILTIN_NAMES: [&'static str; 2] = ["default", "colossus-1-expanded"];

    /// A built-in fleet by name (`default`, `colossus-1-expanded`).
    pub fn builtin(name: &str) -> Option<Fleet> {
        // Case-insensitive, as policy and format names are.
        let name = name.to_ascii_lowercase();
        let text = match name.as_str() {
            "default" => DEFAULT_FLEET_TOML,
            "colossus-1-expanded" => COLOSSUS_EXPANDED_FLEET_TOML,
            _ => return None,
        };
        Some(
            Fleet::from_toml(text, &format!("<built-in fleet {name}>"))
                .expect("the built-in fleets are valid (tested)"),
        )
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// A team by its fleet-unique name, with its organisation.
    pub fn team(&self, name: &str) -> Option<(&Organisation, &Team)> {
        self.tenants
            .iter()
            .find_map(|org| org.teams.iter().find(|t| t.name == name).map(|t| (org, t)))
    }

    pub fn total_accelerators(&self) -> u64 {
        self.clusters.iter().map(Cluster::accelerators).sum()
    }

    /// The most accelerators team `team` may ever hold on cluster `cluster` under its own and
    /// its organisation's quota caps (quota plus borrowing limit); `u64::MAX` without a cap, or
    /// for a team the fleet does not list.
    pub fn quota_cap(&self, team: &str, cluster: &str) -> u64 {
        let Some((org, t)) = self.team(team) else {
            return u64::MAX;
        };
        Quota::cap(&t.quotas, cluster).min(Quota::cap(&org.quotas, cluster))
    }
}

impl Quota {
    /// The lowest cap (quota plus borrowing limit) that `quotas` put on `cluster`, fleet-wide
    /// ones included; `u64::MAX` without one.
    pub fn cap(quotas: &[Quota], cluster: &str) -> u64 {
        quotas
            .iter()
            .filter(|q| q.cluster.as_deref().is_none_or(|c| c == cluster))
            .filter_map(|q| q.borrowing_limit.map(|b| q.accelerators.saturating_add(b)))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// The text of a fleet file with one on-premises cluster on the machine at hand: `nodes` nodes of
/// `per_node` H100s (declared; CPU-only hosts run the example workload on them), team `research`
/// of organisation `lab`. `cluster_extra` is added to the cluster's table (e.g.
/// `backend = "slurm"` and its settings); empty for a cluster run by node agents. What
/// `switchyard demo`, the end-to-end tests and the benchmarks schedule onto.
pub fn local_fleet_toml(
    fleet_name: &str,
    nodes: u32,
    per_node: u32,
    cluster_extra: &str,
) -> String {
    format!(
        r#"# One cluster on this machine (see `switchyard_core::fleet::local_fleet_toml`).
name = "{fleet_name}"

[[providers]]
name = "this-machine"
kind = "on_premises"
[[providers.contracts]]
accelerator = "H100"
reserved = {{ accelerators = {total}, price = 1.0, term_months = 1 }}

[[clusters]]
name = "local"
provider = "this-machine"
region = "here"
accelerator = "H100"
nodes = {nodes}
accelerators_per_node = {per_node}
node_mtbf_hours = 100000.0
repair_hours = 1.0
restart_s = 2.0
topology = {{ scale_up = {{ nodes = 1 }} }}
{cluster_extra}

[[tenants]]
name = "lab"
[[tenants.teams]]
name = "research"
"#,
        total = u64::from(nodes) * u64::from(per_node)
    )
}
