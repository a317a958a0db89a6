//! `switchyard fleet`: show, validate, and list the accelerator catalog.

use std::path::{Path, PathBuf};

use serde::Serialize;
use switchyard_core::accelerator::{self, Accelerator};
use switchyard_core::fleet::{Capacity, Cluster, Fleet, Level, ProviderKind, Quota};

use crate::CliError;
use crate::error::read_text;
use crate::error::{out, outln};
use crate::table::{Table, number, plural, thousands};

#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FleetCommand {
    /// Print providers, clusters, capacity, peak compute, memory and prices, with fleet totals.
    #[command(
        after_help = "Examples:\n  switchyard fleet show\n  switchyard fleet show --fleet examples/fleets/default.toml --json\n  switchyard fleet show --server --url http://127.0.0.1:7070"
    )]
    Show {
        /// Fleet file (TOML, see docs/fleet.md) or a built-in fleet name (`default`,
        /// `colossus-1-expanded`); the built-in default fleet when absent.
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Print one JSON object instead of tables (schema in docs/fleet.md).
        #[arg(long)]
        json: bool,
        /// Ask a running server (`--url`, `--token`) for the fleet it schedules and what is
        /// busy on each cluster (docs/api.md).
        #[arg(long, conflicts_with = "fleet")]
        server: bool,
        #[command(flatten)]
        client: crate::client::ClientArgs,
    },
    /// Check a fleet file; exits 0 when valid, 2 with the file, line and field of the first error.
    #[command(after_help = "Example:\n  switchyard fleet validate examples/fleets/default.toml")]
    Validate {
        /// Fleet file to check.
        file: PathBuf,
    },
    /// List the built-in accelerator catalog with each figure's source.
    #[command(
        after_help = "Examples:\n  switchyard fleet accelerators\n  switchyard fleet accelerators --json"
    )]
    Accelerators {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: FleetArgs) -> Result<(), CliError> {
    match args.command {
        FleetCommand::Show {
            server: true,
            client,
            json,
            ..
        } => crate::client_cmd::fleet_from_server(&client, json),
        FleetCommand::Show { fleet, json, .. } => {
            let fleet = load_fleet(fleet.as_deref())?;
            let view = FleetView::new(&fleet);
            if json {
                print_json(&view)
            } else {
                out!("{}", render_fleet(&view));
                Ok(())
            }
        }
        FleetCommand::Validate { file } => {
            let fleet = load_fleet(Some(&file))?;
            outln!(
                "{}: valid fleet {:?}: {}, {}, {}, {}",
                file.display(),
                fleet.name,
                plural(fleet.providers.len() as u64, "provider"),
                plural(fleet.clusters.len() as u64, "cluster"),
                plural(fleet.total_accelerators(), "accelerator"),
                plural(
                    fleet.tenants.iter().map(|o| o.teams.len()).sum::<usize>() as u64,
                    "team"
                )
            );
            Ok(())
        }
        FleetCommand::Accelerators { json } => {
            if json {
                print_json(&accelerator::catalog())
            } else {
                out!("{}", render_accelerators(accelerator::catalog()));
                Ok(())
            }
        }
    }
}

/// Loads a fleet file, or the built-in default fleet when `path` is `None`. A name of a built-in
/// fleet (`default`, `colossus-1-expanded`) that is not also a file selects that fleet.
pub fn load_fleet(path: Option<&Path>) -> Result<Fleet, CliError> {
    match path {
        None => Ok(Fleet::default_fleet()),
        Some(path) if !path.exists() && path.to_str().and_then(Fleet::builtin).is_some() => {
            Ok(path
                .to_str()
                .and_then(Fleet::builtin)
                .expect("checked just above"))
        }
        // A bare word that names no file was meant as a built-in fleet: say which exist.
        Some(path)
            if !path.exists() && path.extension().is_none() && path.components().count() == 1 =>
        {
            Err(CliError::Input(format!(
                "{}: no such file, and no built-in fleet has that name (built-in: {})",
                path.display(),
                Fleet::BUILTIN_NAMES.join(", ")
            )))
        }
        Some(path) => {
            let text = read_text(path)?;
            Fleet::from_toml(&text, &path.display().to_string())
                .map_err(|e| CliError::Input(e.to_string()))
        }
    }
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Other(format!("cannot encode JSON: {e}")))?;
    outln!("{text}");
    Ok(())
}

/// The stable JSON shape of `fleet show --json` (documented in docs/fleet.md).
#[derive(Debug, Serialize)]
struct FleetView<'a> {
    name: &'a str,
    providers: Vec<ProviderView<'a>>,
    tenants: Vec<TenantView<'a>>,
    totals: Totals,
}

#[derive(Debug, Serialize)]
struct ProviderView<'a> {
    name: &'a str,
    kind: ProviderKind,
    contracts: &'a [switchyard_core::fleet::Contract],
    clusters: Vec<ClusterView<'a>>,
    totals: Totals,
}

#[derive(Debug, Serialize)]
struct ClusterView<'a> {
    name: &'a str,
    region: &'a str,
    accelerator: &'static str,
    nodes: u32,
    accelerators_per_node: u32,
    accelerators: u64,
    capacity: Capacity,
    scale_up_accelerators: u32,
    peak_bf16_pflops: f64,
    hbm_tib: f64,
    price_per_accelerator_hour: f64,
    cost_per_hour_usd: f64,
    node_mtbf_hours: f64,
    repair_hours: f64,
    topology: &'a [Level],
    network_efficiency: f64,
}

#[derive(Debug, Serialize)]
struct TenantView<'a> {
    name: &'a str,
    weight: f64,
    quotas: &'a [Quota],
    teams: &'a [switchyard_core::fleet::Team],
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    clusters: usize,
    nodes: u64,
    accelerators: u64,
    peak_bf16_pflops: f64,
    hbm_tib: f64,
    cost_per_hour_usd: f64,
}

impl Totals {
    fn add(&mut self, c: &Cluster) {
        self.clusters += 1;
        self.nodes += u64::from(c.nodes);
        self.accelerators += c.accelerators();
        self.peak_bf16_pflops += c.peak_bf16_pflops();
        self.hbm_tib += c.hbm_tib();
        self.cost_per_hour_usd += c.accelerators() as f64 * c.price_per_accelerator_hour;
    }
}

impl<'a> FleetView<'a> {
    fn new(fleet: &'a Fleet) -> Self {
        let mut totals = Totals::default();
        let providers = fleet
            .providers
            .iter()
            .map(|p| {
                let mut provider_totals = Totals::default();
                let clusters = fleet
                    .clusters
                    .iter()
                    .filter(|c| c.provider == p.name)
                    .map(|c| {
                        provider_totals.add(c);
                        totals.add(c);
                        ClusterView {
                            name: &c.name,
                            region: &c.region,
                            accelerator: c.accelerator.name,
                            nodes: c.nodes,
                            accelerators_per_node: c.accelerators_per_node,
                            accelerators: c.accelerators(),
                            capacity: c.capacity,
                            scale_up_accelerators: c.scale_up_accelerators(),
                            peak_bf16_pflops: c.peak_bf16_pflops(),
                            hbm_tib: c.hbm_tib(),
                            price_per_accelerator_hour: c.price_per_accelerator_hour,
                            cost_per_hour_usd: c.accelerators() as f64
                                * c.price_per_accelerator_hour,
                            node_mtbf_hours: c.node_mtbf_hours,
                            repair_hours: c.repair_hours,
                            topology: &c.topology.levels,
                            network_efficiency: c.topology.network_efficiency,
                        }
                    })
                    .collect();
                ProviderView {
                    name: &p.name,
                    kind: p.kind,
                    contracts: &p.contracts,
                    clusters,
                    totals: provider_totals,
                }
            })
            .collect();
        let tenants = fleet
            .tenants
            .iter()
            .map(|o| TenantView {
                name: &o.name,
                weight: o.weight,
                quotas: &o.quotas,
                teams: &o.teams,
            })
            .collect();
        FleetView {
            name: &fleet.name,
            providers,
            tenants,
            totals,
        }
    }
}

fn capacity_name(c: Capacity) -> &'static str {
    match c {
        Capacity::Reserved => "reserved",
        Capacity::OnDemand => "on-demand",
        Capacity::Spot => "spot",
    }
}

fn render_fleet(view: &FleetView<'_>) -> String {
    let mut out = format!("Fleet {:?}\n\n", view.name);
    let mut table = Table::new([
        "provider",
        "cluster",
        "region",
        "accelerator",
        "nodes",
        "accelerators",
        "scale-up",
        "PFLOP/s bf16",
        "HBM TiB",
        "capacity",
        "$/acc-h",
        "$/hour",
    ]);
    for p in &view.providers {
        for c in &p.clusters {
            table.row([
                p.name.to_owned(),
                c.name.to_owned(),
                c.region.to_owned(),
                c.accelerator.to_owned(),
                thousands(u64::from(c.nodes)),
                thousands(c.accelerators),
                thousands(u64::from(c.scale_up_accelerators)),
                number(c.peak_bf16_pflops, 1),
                number(c.hbm_tib, 1),
                capacity_name(c.capacity).to_owned(),
                format!("${}", number(c.price_per_accelerator_hour, 2)),
                format!("${}", number(c.cost_per_hour_usd, 0)),
            ]);
        }
        let t = &p.totals;
        table.row([
            format!("{} total", p.name),
            plural(t.clusters as u64, "cluster"),
            String::new(),
            String::new(),
            thousands(t.nodes),
            thousands(t.accelerators),
            String::new(),
            number(t.peak_bf16_pflops, 1),
            number(t.hbm_tib, 1),
            String::new(),
            String::new(),
            format!("${}", number(t.cost_per_hour_usd, 0)),
        ]);
        table.rule();
    }
    let t = &view.totals;
    table.row([
        "fleet total".to_owned(),
        plural(t.clusters as u64, "cluster"),
        String::new(),
        String::new(),
        thousands(t.nodes),
        thousands(t.accelerators),
        String::new(),
        number(t.peak_bf16_pflops, 1),
        number(t.hbm_tib, 1),
        String::new(),
        String::new(),
        format!("${}", number(t.cost_per_hour_usd, 0)),
    ]);
    out.push_str(&table.render());

    out.push_str("\nTenants (quotas in accelerators; * = fleet-wide)\n\n");
    let mut tenants = Table::new(["organisation", "team", "weight", "priority", "quotas"]);
    let quotas = |quotas: &[Quota]| -> String {
        if quotas.is_empty() {
            return "none".to_owned();
        }
        let each: Vec<String> = quotas
            .iter()
            .map(|q| {
                let borrow = q
                    .borrowing_limit
                    .map_or(String::new(), |b| format!(" (+{} borrow)", thousands(b)));
                format!(
                    "{}: {}{borrow}",
                    q.cluster.as_deref().unwrap_or("*"),
                    thousands(q.accelerators)
                )
            })
            .collect();
        each.join(", ")
    };
    for o in &view.tenants {
        // The organisation's own weight and caps, which bind all its teams together.
        tenants.row([
            o.name.to_owned(),
            "(all teams)".to_owned(),
            number(o.weight, 1),
            "-".to_owned(),
            quotas(o.quotas),
        ]);
        for team in o.teams {
            tenants.row([
                o.name.to_owned(),
                team.name.clone(),
                number(team.weight, 1),
                team.priority.to_string(),
                quotas(&team.quotas),
            ]);
        }
    }
    out.push_str(&tenants.render());
    out
}

fn render_accelerators(catalog: &[Accelerator]) -> String {
    let mut table = Table::new([
        "accelerator",
        "vendor",
        "bf16 TFLOP/s",
        "fp8 TFLOP/s",
        "HBM GiB",
        "HBM TB/s",
        "scale-up",
        "GB/s up",
        "GB/s out",
        "watts",
    ]);
    for a in catalog {
        table.row([
            a.name.to_owned(),
            format!("{:?}", a.vendor).to_lowercase(),
            number(a.bf16_tflops, 1),
            a.fp8_tflops.map_or("-".to_owned(), |f| number(f, 1)),
            number(a.hbm_gib, 0),
            number(a.hbm_tb_s, 2),
            thousands(u64::from(a.scale_up.domain)),
            number(a.scale_up.gb_s, 1),
            number(a.scale_out_gb_s, 2),
            number(a.power_w, 0),
        ]);
    }
    let mut out = table.render();
    out.push_str("\nDense peaks (no sparsity); bandwidths per chip, per direction. Sources: `--json` (`notes`).\n");
    out
}
