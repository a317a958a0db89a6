//! The fleet loader: the default fleet, and every kind of bad file with its precise error.

use switchyard_core::fleet::{
    BUILTIN_FLEETS, COLOSSUS_EXPANDED_FLEET_TOML, Capacity, DEFAULT_FLEET_TOML, Fleet, LevelKind,
};

const GOOD: &str = r#"
name = "tiny"

[[providers]]
name = "cloud"
kind = "cloud"
[[providers.contracts]]
accelerator = "H100-SXM"
reserved = { accelerators = 1024, price = 2.5, term_months = 12 }
on_demand_price = 6.0

[[clusters]]
name = "east"
provider = "cloud"
region = "us-east-1"
accelerator = "H100"
nodes = 128
accelerators_per_node = 8
node_mtbf_hours = 5000.0
repair_hours = 12.0
[clusters.topology]
scale_up = { nodes = 1, gb_s = 450.0 }
rack = { nodes = 4 }
block = { nodes = 32, gb_s = 50.0 }
network_efficiency = 0.9

[[tenants]]
name = "lab"
[[tenants.teams]]
name = "research"
quotas = [{ cluster = "east", accelerators = 512 }, { accelerators = 600 }]
"#;

fn load(text: &str) -> Result<Fleet, switchyard_core::FleetError> {
    Fleet::from_toml(text, "fleet.toml")
}

/// Replaces the first occurrence of `from` in the good file, asserting it was there.
fn mutate(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "test fixture lacks {from:?}");
    GOOD.replacen(from, to, 1)
}

/// Loads a bad file and returns (line, field, message), asserting the file name is reported.
fn error_of(text: &str) -> (usize, String, String) {
    let err = load(text).expect_err("the file should be rejected");
    assert_eq!(err.file, "fleet.toml");
    let rendered = err.to_string();
    assert!(
        rendered.starts_with(&format!("fleet.toml:{}:", err.line)),
        "{rendered}"
    );
    (err.line, err.field, err.message)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

#[test]
fn good_file_loads_with_defaults_filled_in() {
    let fleet = load(GOOD).expect("good file");
    assert_eq!(fleet.name, "tiny");
    let east = fleet.cluster("east").expect("cluster");
    assert_eq!(
        east.accelerator.name, "H100-SXM",
        "alias resolved to the canonical name"
    );
    assert_eq!(east.accelerators(), 1024);
    assert_eq!(east.capacity, Capacity::Reserved);
    assert_eq!(east.price_per_accelerator_hour, 2.5);
    let kinds: Vec<_> = east
        .topology
        .levels
        .iter()
        .map(|l| (l.kind, l.nodes))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (LevelKind::ScaleUp, 1),
            (LevelKind::Rack, 4),
            (LevelKind::Block, 32),
            (LevelKind::Cluster, 128)
        ]
    );
    assert_eq!(
        east.topology.level(LevelKind::Rack).map(|l| l.gb_s),
        Some(50.0),
        "rack bandwidth defaults to scale-out"
    );
    assert_eq!(east.topology.network_efficiency, 0.9);
    let (org, team) = fleet.team("research").expect("team");
    assert_eq!(org.name, "lab");
    assert_eq!(team.quotas.len(), 2);
}

#[test]
fn default_fleet_is_the_frontier_lab() {
    let fleet = Fleet::default_fleet();
    let colossus = fleet.cluster("colossus-1").expect("colossus-1");
    assert_eq!(colossus.accelerator.name, "H100-SXM");
    assert_eq!(colossus.accelerators_per_node, 8);
    assert!((100_000..=100_500).contains(&colossus.accelerators()));
    assert_eq!(
        colossus
            .topology
            .level(LevelKind::Rack)
            .map(|l| l.nodes * 8),
        Some(64),
        "64 GPUs per rack"
    );
    assert_eq!(
        colossus.topology.level(LevelKind::Cluster).map(|l| l.gb_s),
        Some(50.0),
        "400 Gb/s per GPU"
    );
    assert_eq!(colossus.topology.network_efficiency, 0.95);
    let trn2 = fleet.cluster("aws-trn2-ohio").expect("trainium cluster");
    assert_eq!(trn2.scale_up_accelerators(), 64, "UltraServers of 64 chips");
    for provider in ["aws", "gcp", "colossus"] {
        assert!(fleet.provider(provider).is_some(), "{provider}");
    }
    for team in ["pretraining", "research", "serving"] {
        assert!(fleet.team(team).is_some(), "{team}");
    }
    assert!(
        fleet
            .clusters
            .iter()
            .any(|c| c.accelerator.name.starts_with("TPU"))
    );
    assert!(
        fleet
            .clusters
            .iter()
            .any(|c| c.provider == "gcp" && c.accelerator.name == "H100-SXM")
    );
    assert!(fleet.clusters.iter().any(|c| c.capacity == Capacity::Spot));
}

#[test]
fn shipped_example_is_identical_to_the_built_in_fleet() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleets/default.toml"
    );
    let shipped = std::fs::read_to_string(path).expect("examples/fleets/default.toml exists");
    assert_eq!(
        shipped, DEFAULT_FLEET_TOML,
        "examples/fleets/default.toml and the built-in fleet differ"
    );
}

#[test]
fn expanded_colossus_has_about_200k_hopper_gpus() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fleets/colossus-1-expanded.toml"
    );
    let shipped =
        std::fs::read_to_string(path).expect("examples/fleets/colossus-1-expanded.toml exists");
    assert_eq!(shipped, COLOSSUS_EXPANDED_FLEET_TOML);
    let fleet = Fleet::builtin("colossus-1-expanded").expect("built in");
    assert!((200_000..=201_000).contains(&fleet.total_accelerators()));
    assert!(
        fleet
            .clusters
            .iter()
            .all(|c| c.accelerator.name.starts_with('H'))
    );
    for name in BUILTIN_FLEETS {
        assert!(Fleet::builtin(name).is_some(), "{name}");
    }
    assert!(Fleet::builtin("nope").is_none());
    // Names are case-insensitive, as policy and format names are.
    assert!(Fleet::builtin("Colossus-1-Expanded").is_some());
}

#[test]
fn unknown_accelerator_is_named_with_the_alternatives() {
    let text = mutate(r#"accelerator = "H100""#, r#"accelerator = "H1000""#);
    let (line, field, message) = error_of(&text);
    assert_eq!(line, line_of(&text, "H1000"));
    assert_eq!(field, "clusters[0].accelerator");
    assert!(
        message.contains("unknown accelerator \"H1000\""),
        "{message}"
    );
    assert!(
        message.contains("H100-SXM") && message.contains("TPU-v5p"),
        "{message}"
    );
}

#[test]
fn sizes_rates_and_prices_past_what_is_supported_are_rejected() {
    let text = mutate("nodes = 128", "nodes = 4294967288");
    let (line, field, message) = error_of(&text);
    assert_eq!(
        (line, field.as_str()),
        (line_of(&text, "nodes = 4294967288"), "clusters[0].nodes")
    );
    assert!(message.contains("supported maximum 1048576"), "{message}");

    let text = mutate(
        "accelerators_per_node = 8",
        "accelerators_per_node = 1000000",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].accelerators_per_node");
    assert!(
        message.contains("more than the supported maximum 16777216"),
        "{message}"
    );

    let text = GOOD.replacen(
        &GOOD[GOOD.find("node_mtbf_hours").expect("fixture has an MTBF")..]
            .lines()
            .next()
            .expect("line")
            .to_owned(),
        "node_mtbf_hours = 1e-6",
        1,
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].node_mtbf_hours");
    assert!(message.contains("supported minimum is 1 hour"), "{message}");
    // Given per accelerator, the error names that field and says how it became per node.
    let text = text.replace("node_mtbf_hours = 1e-6", "accelerator_mtbf_hours = 2.0");
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].accelerator_mtbf_hours");
    assert!(message.contains("divided by"), "{message}");

    // A TOML integer past 64 bits is too large, not "not an integer".
    let nodes = GOOD[GOOD.find("nodes =").expect("fixture has nodes")..]
        .lines()
        .next()
        .expect("line")
        .to_owned();
    let text = GOOD.replacen(&nodes, "nodes = 99999999999999999999", 1);
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].nodes");
    assert!(
        message.contains(
            "the number 99999999999999999999 is too large: whole numbers in TOML go up to"
        ),
        "{message}"
    );

    let price = GOOD[GOOD.find("on_demand_price").expect("fixture has a price")..]
        .lines()
        .next()
        .expect("line")
        .to_owned();
    let text = GOOD.replacen(&price, "on_demand_price = 1e308", 1);
    let (_, field, message) = error_of(&text);
    assert!(field.ends_with("on_demand_price"), "{field}");
    assert!(
        message.contains(
            "price per accelerator-hour 1e308 is larger than the supported maximum 1000000 USD"
        ),
        "{message}"
    );

    // A bandwidth of next to nothing would make every figure infinite.
    for (from, to, field) in [
        (
            "block = { nodes = 32, gb_s = 50.0 }",
            "block = { nodes = 32, gb_s = 1e-300 }",
            "clusters[0].topology.block.gb_s",
        ),
        (
            "repair_hours = 12.0",
            "repair_hours = 12.0\ncheckpoint_write_gb_s = 0.001",
            "clusters[0].checkpoint_write_gb_s",
        ),
    ] {
        let (_, got, message) = error_of(&mutate(from, to));
        assert_eq!(got, field);
        assert!(
            message.contains("below the supported minimum of 0.01 GB/s"),
            "{message}"
        );
    }
}

#[test]
fn zero_and_negative_counts_are_rejected() {
    let text = mutate("nodes = 128", "nodes = 0");
    let (line, field, message) = error_of(&text);
    assert_eq!(
        (line, field.as_str()),
        (line_of(&text, "nodes = 0"), "clusters[0].nodes")
    );
    assert!(
        message.contains("expected a positive node count, found 0"),
        "{message}"
    );

    let text = mutate("accelerators_per_node = 8", "accelerators_per_node = -8");
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].accelerators_per_node");
    assert!(message.contains("found -8"), "{message}");

    let text = mutate(
        "{ cluster = \"east\", accelerators = 512 }",
        "{ cluster = \"east\", accelerators = -1 }",
    );
    let (_, field, _) = error_of(&text);
    assert_eq!(field, "tenants[0].teams[0].quotas[0].accelerators");

    let text = mutate("price = 2.5", "price = -2.5");
    let (_, field, _) = error_of(&text);
    assert_eq!(field, "providers[0].contracts[0].reserved.price");

    let text = mutate("repair_hours = 12.0", "repair_hours = -1.0");
    let (_, field, _) = error_of(&text);
    assert_eq!(field, "clusters[0].repair_hours");
    // A team's default priority has the range a submission's own has.
    for bad in ["1001", "-1001", "99999999999"] {
        let text = mutate(
            "name = \"research\"\n",
            &format!("name = \"research\"\npriority = {bad}\n"),
        );
        let (_, field, message) = error_of(&text);
        assert_eq!(field, "tenants[0].teams[0].priority");
        assert!(message.contains("from -1000 to 1000"), "{message}");
    }
    load(&mutate(
        "name = \"research\"\n",
        "name = \"research\"\npriority = -1000\n",
    ))
    .expect("the range's end is fine");
    // A year at most: a node out longer is gone (a simulation waits out 100 repairs).
    let text = mutate("repair_hours = 12.0", "repair_hours = 1e9");
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].repair_hours");
    assert!(message.contains("maximum of 8760 hours"), "{message}");
    load(&mutate("repair_hours = 12.0", "repair_hours = 8760")).expect("a year is fine");
    let text = mutate("repair_hours = 12.0", "repair_hours = inf");
    let (_, _, message) = error_of(&text);
    assert!(message.contains("maximum of 8760 hours"), "{message}");

    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\ncheckpoint_write_gb_s = 0.0",
    );
    let (line, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].checkpoint_write_gb_s");
    assert_eq!(line, line_of(&text, "checkpoint_write_gb_s"));
    assert!(message.contains("checkpoint write bandwidth"), "{message}");
}

#[test]
fn storage_write_bandwidth_is_optional() {
    assert_eq!(
        load(GOOD).expect("valid").clusters[0].checkpoint_write_gb_s,
        None
    );
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\ncheckpoint_write_gb_s = 2000.0",
    );
    let fleet = load(&text).expect("valid");
    assert_eq!(fleet.clusters[0].checkpoint_write_gb_s, Some(2000.0));
}

#[test]
fn topology_that_does_not_divide_is_rejected() {
    let text = mutate("rack = { nodes = 4 }", "rack = { nodes = 5 }");
    let (line, field, message) = error_of(&text);
    assert_eq!(
        field, "clusters[0].topology.block.nodes",
        "32 nodes per block is not a whole number of 5-node racks"
    );
    assert_eq!(line, line_of(&text, "block = "));
    assert!(message.contains("does not divide evenly"), "{message}");

    let text = mutate("nodes = 128", "nodes = 100");
    let (line, field, message) = error_of(&text);
    assert_eq!(
        (line, field.as_str()),
        (line_of(&text, "nodes = 100"), "clusters[0].nodes")
    );
    assert!(
        message.contains("100 nodes do not divide evenly into blocks of 32 nodes"),
        "{message}"
    );

    let text = mutate(
        "scale_up = { nodes = 1, gb_s = 450.0 }",
        "scale_up = { nodes = 2, gb_s = 450.0 }",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].topology.scale_up.nodes");
    assert!(
        message.contains("does not reach beyond it: a scale-up domain is 1 node here, not 2"),
        "an HGX board's NVLink stays in its server: {message}"
    );

    // A rack-scale fabric spans servers, up to what it connects.
    let gb200 = GOOD
        .replacen(
            "{ cluster = \"east\", accelerators = 512 }",
            "{ cluster = \"east\", accelerators = 64 }",
            1,
        )
        .replacen("accelerator = \"H100-SXM\"", "accelerator = \"GB200\"", 1)
        .replacen("accelerator = \"H100\"", "accelerator = \"GB200\"", 1)
        .replacen("nodes = 128", "nodes = 72", 1)
        .replacen("accelerators_per_node = 8", "accelerators_per_node = 4", 1)
        .replacen(
            "rack = { nodes = 4 }\nblock = { nodes = 32, gb_s = 50.0 }\n",
            "",
            1,
        );
    let fleet = load(&gb200.replacen("nodes = 1, gb_s = 450.0", "nodes = 18, gb_s = 900.0", 1))
        .expect("an NVL72 rack of 18 trays");
    assert_eq!(fleet.clusters[0].scale_up_accelerators(), 72);
    let (_, field, message) =
        error_of(&gb200.replacen("nodes = 1, gb_s = 450.0", "nodes = 36, gb_s = 900.0", 1));
    assert_eq!(field, "clusters[0].topology.scale_up.nodes");
    assert!(message.contains("at most 72"), "{message}");
}

/// Servers with fewer accelerators than an HGX board have an NVLink domain that small, by
/// default too: NVLink does not join separate servers.
#[test]
fn a_small_server_has_a_small_fabric() {
    let text = mutate("accelerators_per_node = 8", "accelerators_per_node = 1")
        .replacen("scale_up = { nodes = 1, gb_s = 450.0 }\n", "", 1)
        .replacen(
            "{ cluster = \"east\", accelerators = 512 }",
            "{ cluster = \"east\", accelerators = 64 }",
            1,
        );
    let fleet = load(&text).expect("128 one-GPU servers");
    let east = &fleet.clusters[0];
    assert_eq!(east.topology.scale_up_nodes(), 1);
    assert_eq!(east.scale_up_accelerators(), 1);
}

#[test]
fn duplicate_names_are_rejected_with_the_first_definition() {
    let text = format!(
        "{GOOD}\n[[clusters]]\nname = \"east\"\nprovider = \"cloud\"\nregion = \"r\"\naccelerator = \"H100-SXM\"\nnodes = 1\ncapacity = \"on_demand\"\nnode_mtbf_hours = 1.0\nrepair_hours = 1.0\n"
    );
    let (line, field, message) = error_of(&text);
    assert_eq!(field, "clusters[1].name");
    assert_eq!(
        line,
        text.lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| *l == "name = \"east\"")
            .expect("line")
            + 1
    );
    assert!(
        message.contains(&format!(
            "duplicate cluster name \"east\" (first defined on line {})",
            line_of(GOOD, "name = \"east\"")
        )),
        "{message}"
    );

    let text =
        format!("{GOOD}\n[[tenants]]\nname = \"other\"\n[[tenants.teams]]\nname = \"research\"\n");
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "tenants[1].teams[0].name");
    assert!(message.contains("duplicate team name"), "{message}");
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nrepair_hourz = 3.0",
    );
    let (line, _, message) = error_of(&text);
    assert_eq!(line, line_of(&text, "repair_hourz"));
    assert!(
        message.contains("unknown field `repair_hourz`"),
        "{message}"
    );
    assert!(
        message.contains("repair_hours"),
        "lists the expected keys: {message}"
    );
}

/// Of two unknown keys, the one a reader meets first is reported, not the first in
/// alphabetical order: the error points at the line to fix before the next.
#[test]
fn the_first_unknown_key_in_the_file_is_reported() {
    let text = format!("zone = \"a\"\nalias = \"b\"\n{GOOD}");
    let (line, field, message) = error_of(&text);
    assert_eq!((line, field.as_str()), (1, "zone"), "{message}");
}

#[test]
fn quota_on_a_missing_cluster_is_rejected() {
    let text = mutate(
        r#"cluster = "east", accelerators = 512"#,
        r#"cluster = "west", accelerators = 512"#,
    );
    let (line, field, message) = error_of(&text);
    assert_eq!(
        (line, field.as_str()),
        (
            line_of(&text, "\"west\""),
            "tenants[0].teams[0].quotas[0].cluster"
        )
    );
    assert!(
        message.contains("quota on unknown cluster \"west\"; the fleet defines: east"),
        "{message}"
    );
}

#[test]
fn other_reference_and_contract_errors() {
    let text = mutate(r#"provider = "cloud""#, r#"provider = "clod""#);
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].provider");
    assert!(message.contains("unknown provider \"clod\""), "{message}");

    let text = mutate(
        "accelerators_per_node = 8",
        "accelerators_per_node = 8\ncapacity = \"spot\"",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].capacity");
    assert!(
        message.contains("no contract with `spot_price` for H100-SXM"),
        "{message}"
    );

    let text = mutate(
        "reserved = { accelerators = 1024,",
        "reserved = { accelerators = 512,",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].nodes");
    assert!(
        message.contains("more than the 512 its contract reserves"),
        "{message}"
    );

    let text = mutate("node_mtbf_hours = 5000.0\n", "");
    let (_, _, message) = error_of(&text);
    assert!(message.contains("missing failure rate"), "{message}");

    let text = mutate("network_efficiency = 0.9", "network_efficiency = 1.5");
    let (_, field, _) = error_of(&text);
    assert_eq!(field, "clusters[0].topology.network_efficiency");

    // A trace lists clusters with `|` between them: a name holding one could never be named.
    let text = mutate(r#"name = "east""#, r#"name = "ea|st""#);
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].name");
    assert!(message.contains("'|'"), "{message}");
}

#[test]
fn syntax_and_type_errors_carry_a_position() {
    let text = mutate("nodes = 128", "nodes = \"many\"");
    let (line, _, message) = error_of(&text);
    assert_eq!(line, line_of(&text, "\"many\""));
    assert!(message.contains("expected a whole number"), "{message}");

    let (line, _, _) = error_of("name = \"x\"\n[[clusters]\n");
    assert_eq!(line, 2);

    let (_, field, message) = error_of("name = \"empty\"\n");
    assert_eq!(field, "clusters");
    assert!(message.contains("at least one"), "{message}");
}

#[test]
fn accelerator_mtbf_converts_to_node_mtbf() {
    let text = mutate(
        "node_mtbf_hours = 5000.0",
        "accelerator_mtbf_hours = 40000.0",
    );
    let fleet = load(&text).expect("valid");
    assert_eq!(fleet.clusters[0].node_mtbf_hours, 5000.0);
}

#[test]
fn the_example_in_docs_fleet_md_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md");
    let doc = std::fs::read_to_string(path).expect("docs/fleet.md exists");
    let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed block");
    let fleet = Fleet::from_toml(&doc[start..end], "docs/fleet.md")
        .expect("the documented example is valid");
    assert_eq!(fleet.clusters.len(), 2);
    assert_eq!(
        fleet.cluster("colossus-1").map(|c| c.accelerators()),
        Some(100_352)
    );
}

#[test]
fn slurm_backend_is_parsed_and_bad_values_are_rejected() {
    use switchyard_core::fleet::ClusterBackend;
    let slurm = "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", log_dir = \"/shared/logs\" }";
    let fleet = load(&mutate("repair_hours = 12.0", slurm)).expect("valid");
    match &fleet.clusters[0].backend {
        ClusterBackend::Slurm(s) => {
            assert_eq!(s.partition, "gpu");
            assert_eq!(s.log_dir.as_deref(), Some("/shared/logs"));
            assert_eq!(s.rest_url, None);
        }
        other => panic!("expected Slurm, found {other:?}"),
    }
    assert_eq!(
        load(GOOD).expect("valid").clusters[0].backend,
        ClusterBackend::Agents
    );

    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"pbs\"",
    );
    let (line, field, message) = error_of(&text);
    assert_eq!(line, line_of(&text, "backend = \"pbs\""));
    assert_eq!(field, "clusters[0].backend");
    assert!(message.contains("unknown backend \"pbs\""), "{message}");

    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].backend");
    assert!(message.contains("[clusters.slurm]"), "{message}");

    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", rest_url = \"ftp://x\", token_env = \"T\" }",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].slurm.rest_url");
    assert!(message.contains("http"), "{message}");

    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", rest_url = \"http://ctl:6820\" }",
    );
    let (_, field, _) = error_of(&text);
    assert_eq!(field, "clusters[0].slurm.token_env");

    // The server speaks no TLS to slurmrestd: validate says so, not the server at start.
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", rest_url = \"https://ctl:6820\", token_env = \"T\" }",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].slurm.rest_url");
    assert!(message.contains("no TLS"), "{message}");

    // slurmrestd's address alone: a host, a real port, no path (the backend adds its own).
    for (url, says) in [
        ("http://", "names no host"),
        ("http://127.0.0.1:99999", "not a TCP port"),
        ("http://ctl:6820/slurm/v0.0.38", "has a path"),
        ("http://local host:6820", "no host name or address"),
        ("http://user@ctl:6820", "user name"),
    ] {
        let text = mutate(
            "repair_hours = 12.0",
            &format!(
                "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = {{ partition = \"gpu\", rest_url = \"{url}\", token_env = \"T\" }}"
            ),
        );
        let (_, field, message) = error_of(&text);
        assert_eq!(field, "clusters[0].slurm.rest_url", "{url}");
        assert!(message.contains(says), "{url}: {message}");
    }
    for url in ["http://ctl:6820/", "http://[::1]:6820", "http://ctl"] {
        let text = mutate(
            "repair_hours = 12.0",
            &format!(
                "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = {{ partition = \"gpu\", rest_url = \"{url}\", token_env = \"T\" }}"
            ),
        );
        Fleet::from_toml(&text, "f.toml").unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    // Paths the job opens are absolute: Slurm resolves a relative one against the job's
    // working directory (slurmrestd's `/`), not the server's.
    for key in ["log_dir", "checkpoint_dir"] {
        let text = mutate(
            "repair_hours = 12.0",
            &format!(
                "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = {{ partition = \"gpu\", {key} = \"rlogs\" }}"
            ),
        );
        let (_, field, message) = error_of(&text);
        assert_eq!(field, format!("clusters[0].slurm.{key}"));
        assert!(message.contains("expected an absolute path"), "{message}");
        let text = mutate(
            "repair_hours = 12.0",
            &format!(
                "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = {{ partition = \"gpu\", {key} = \"/tmp/a\\nb\" }}"
            ),
        );
        let (_, field, message) = error_of(&text);
        assert_eq!(field, format!("clusters[0].slurm.{key}"));
        assert!(message.contains("control character"), "{message}");
    }
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"deb ug\" }",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].slurm.partition");
    assert!(message.contains("white space"), "{message}");
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu,debug\" }",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].slurm.partition");
    assert!(message.contains("names several partitions"), "{message}");

    // A token for no slurmrestd is a mistake, not a no-op.
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", token_env = \"T\" }",
    );
    let (line, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].slurm.token_env");
    assert_eq!(line, line_of(&text, "token_env"));
    assert!(message.contains("no `rest_url`"), "{message}");

    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", partitoin = \"x\" }",
    );
    let (line, _, message) = error_of(&text);
    assert_eq!(line, line_of(&text, "partitoin"));
    assert!(message.contains("partitoin"), "{message}");
}

#[test]
fn a_missing_or_mistyped_field_names_its_table() {
    // A second cluster without a region: the error names clusters[1], not an empty path.
    let second = GOOD[GOOD.find("[[clusters]]").expect("fixture has a cluster")..]
        .replacen("name = \"", "name = \"x", 1)
        .lines()
        .filter(|l| !l.starts_with("region"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{GOOD}\n{second}\n");
    let err = load(&text).expect_err("no region");
    assert!(err.field.starts_with("clusters[1]"), "{err}");
    assert!(err.to_string().contains("missing field `region`"), "{err}");
    // A region is free text: a `/` is fine, a control character is not.
    load(&mutate(
        "region = \"us-east-1\"",
        "region = \"us/east | 1\"",
    ))
    .expect("a region with /");
    let (_, field, message) = error_of(&mutate("region = \"us-east-1\"", "region = \"us\\teast\""));
    assert_eq!(field, "clusters[0].region");
    assert!(
        message.contains("region \"us\\teast\" may not contain control"),
        "{message}"
    );
    // Inside inline tables and arrays too: the element and the key.
    for (from, to, field) in [
        (
            "term_months = 12 }",
            "term_months = 12.5 }",
            "providers[0].contracts[0].reserved.term_months",
        ),
        (
            "{ accelerators = 600 }]",
            "{ accelerators = 16.5 }]",
            "tenants[0].teams[0].quotas[1].accelerators",
        ),
        (
            "{ cluster = \"east\", accelerators = 512 }",
            "{ cluster = \"east\" }",
            "tenants[0].teams[0].quotas[0]",
        ),
        (
            "{ cluster = \"east\", accelerators = 512 }",
            "{ cluster = \"east\", 'accelerators' = \"x\" }",
            "tenants[0].teams[0].quotas[0].accelerators",
        ),
    ] {
        let (_, got, message) = error_of(&mutate(from, to));
        assert_eq!(got, field, "{to}: {message}");
    }
    // And in an inline array written over several lines, a comment and a string with
    // brackets in it before the bad value.
    let (_, got, message) = error_of(&mutate(
        "quotas = [{ cluster = \"east\", accelerators = 512 }, { accelerators = 600 }]",
        "quotas = [\n  # east first\n  { cluster = \"east\", accelerators = 512 },\n  \
         { accelerators = 600, borrowing_limit = \"x]{\" },\n]",
    ));
    assert_eq!(
        got, "tenants[0].teams[0].quotas[1].borrowing_limit",
        "{message}"
    );
    // A value of the wrong type: its full key.
    let text = mutate("nodes = 128", "nodes = \"many\"");
    let (_, field, _) = error_of(&text);
    assert_eq!(field, "clusters[0].nodes");
}

/// A team's quota cap is the tightest of its own and its organisation's caps (quota plus
/// borrowing limit) that cover the cluster; a quota without a borrowing limit caps nothing, nor
/// does a cap on another cluster; a team the fleet does not list has none.
#[test]
fn quota_caps_combine_team_and_organisation_rules() {
    let fleet = load(&GOOD.replace(
        "[[tenants]]\nname = \"lab\"\n",
        "[[tenants]]\nname = \"lab\"\nquotas = [{ accelerators = 700, borrowing_limit = 100 }]\n",
    ))
    .expect("valid");
    // Team: 512 on east (no limit), 600 fleet-wide (no limit); organisation: 700 + 100.
    assert_eq!(fleet.quota_cap("research", "east"), 800);
    // An organisation's quota without a borrowing limit would cap nothing: refused.
    let text = GOOD.replace(
        "[[tenants]]\nname = \"lab\"\n",
        "[[tenants]]\nname = \"lab\"\nquotas = [{ accelerators = 700 }]\n",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "tenants[0].quotas[0].borrowing_limit");
    assert!(
        message.contains("caps its teams together at accelerators + borrowing_limit"),
        "{message}"
    );
    assert_eq!(fleet.quota_cap("nobody", "east"), u64::MAX);
    // A team guaranteed more than its organisation lets its teams hold together there: the
    // guarantee could never be honoured, per cluster or fleet-wide.
    for (org_quota, field, says) in [
        (
            "{ cluster = \"east\", accelerators = 0, borrowing_limit = 500 }",
            "tenants[0].teams[0].quotas[0].accelerators",
            "team research is guaranteed 512 accelerators on east, more than its organisation \
             lab lets its teams hold there together (500,",
        ),
        (
            "{ accelerators = 300, borrowing_limit = 200 }",
            "tenants[0].teams[0].quotas[0].accelerators",
            "guaranteed 512 accelerators on east, more than its organisation lab lets its \
             teams hold there together (500,",
        ),
    ] {
        let text = GOOD.replace(
            "[[tenants]]\nname = \"lab\"\n",
            &format!("[[tenants]]\nname = \"lab\"\nquotas = [{org_quota}]\n"),
        );
        let (_, got_field, message) = error_of(&text);
        assert_eq!(got_field, field, "{org_quota}: {message}");
        assert!(message.contains(says), "{org_quota}: {message}");
    }
    let text = GOOD.replace(
        "[[tenants]]\nname = \"lab\"\n",
        "[[tenants]]\nname = \"lab\"\nquotas = [{ accelerators = 560, borrowing_limit = 39 }]\n",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(
        field, "tenants[0].teams[0].quotas[1].accelerators",
        "{message}"
    );
    assert!(
        message.contains("guaranteed 600 accelerators fleet-wide"),
        "{message}"
    );
    let fleet = load(&GOOD.replace(
        "quotas = [{ cluster = \"east\", accelerators = 512 }, { accelerators = 600 }]",
        "quotas = [{ cluster = \"east\", accelerators = 512, borrowing_limit = 16 }, \
         { accelerators = 600, borrowing_limit = 0 }]",
    ))
    .expect("valid");
    assert_eq!(fleet.quota_cap("research", "east"), 528);
    assert_eq!(
        fleet.quota_cap("research", "west"),
        600,
        "only the fleet-wide cap"
    );
    let uncapped = load(GOOD).expect("valid");
    assert_eq!(uncapped.quota_cap("research", "east"), u64::MAX);
}

/// A quota of 0 with a borrowing limit caps a team without guaranteeing it anything; 0 alone
/// says nothing and is refused, naming the field.
#[test]
fn a_zero_quota_with_a_borrowing_limit_is_a_cap_alone() {
    let fleet = load(&GOOD.replace(
        "quotas = [{ cluster = \"east\", accelerators = 512 }, { accelerators = 600 }]",
        "quotas = [{ cluster = \"east\", accelerators = 0, borrowing_limit = 64 }]",
    ))
    .expect("valid");
    assert_eq!(fleet.quota_cap("research", "east"), 64);
    let text = GOOD.replace(
        "quotas = [{ cluster = \"east\", accelerators = 512 }, { accelerators = 600 }]",
        "quotas = [{ cluster = \"east\", accelerators = 0 }]",
    );
    let (_, field, message) = error_of(&text);
    assert!(field.ends_with(".quotas[0].accelerators"), "{field}");
    assert!(message.contains("guarantees nothing"), "{message}");
}

#[test]
fn a_clusters_restart_time_is_optional_and_bounded() {
    assert_eq!(load(GOOD).expect("valid").clusters[0].restart_s, None);
    let text = mutate(
        "repair_hours = 12.0",
        "repair_hours = 12.0\nrestart_s = 45.0",
    );
    assert_eq!(
        load(&text).expect("valid").clusters[0].restart_s,
        Some(45.0)
    );
    for bad in ["-1.0", "86401.0", "nan"] {
        let text = mutate(
            "repair_hours = 12.0",
            &format!("repair_hours = 12.0\nrestart_s = {bad}"),
        );
        let (line, field, message) = error_of(&text);
        assert_eq!(field, "clusters[0].restart_s", "{bad}");
        assert_eq!(line, line_of(&text, "restart_s"), "{bad}");
        assert!(
            message.contains("restart time from 0 to 86400 s"),
            "{message}"
        );
    }
}

/// A team guaranteed more than its cluster holds, or named as an organisation is, is refused:
/// the guarantee could never be honoured, and a tenant's name must say whether it is a team.
#[test]
fn impossible_guarantees_and_names_shared_by_a_team_and_an_organisation_are_refused() {
    let (_, field, message) = error_of(&GOOD.replacen(
        "{ cluster = \"east\", accelerators = 512 }",
        "{ cluster = \"east\", accelerators = 5000 }",
        1,
    ));
    assert_eq!(field, "tenants[0].teams[0].quotas[0].accelerators");
    assert!(
        message.contains("is guaranteed 5000 accelerators on east, which holds 1024"),
        "{message}"
    );
    let (_, field, message) = error_of(&GOOD.replacen("name = \"research\"", "name = \"lab\"", 1));
    assert_eq!(field, "tenants[0].teams[0].name");
    assert!(
        message.starts_with("team name \"lab\" is also an organisation name (line 28)"),
        "{message}"
    );
}

/// A cluster whose nodes do not fill the chip's own scale-up domains names the chip's domain as
/// the catalog has it, and what that makes here with its server size.
#[test]
fn nodes_that_do_not_fill_a_chips_domains_say_what_a_domain_is() {
    let text = GOOD
        .replacen(
            "accelerator = \"H100-SXM\"\nreserved",
            "accelerator = \"TPU-v5p\"\nreserved",
            1,
        )
        .replacen("accelerator = \"H100\"", "accelerator = \"TPU-v5p\"", 1)
        .replacen("accelerators_per_node = 8", "accelerators_per_node = 3", 1)
        .replacen(
            "[clusters.topology]\nscale_up = { nodes = 1, gb_s = 450.0 }\nrack = { nodes = 4 }\nblock = { nodes = 32, gb_s = 50.0 }\nnetwork_efficiency = 0.9\n",
            "",
            1,
        );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "clusters[0].nodes");
    assert!(
        message.contains(
            "TPU-v5p links up to 8,960 accelerators, so a domain here is 2,986 nodes of 3 \
             (8,958 accelerators)"
        ),
        "{message}"
    );
}

/// A team whose caps leave it nothing anywhere is refused: none of its jobs could ever run. A
/// cap of 0 on one cluster of several keeps the team off that cluster, and is fine.
#[test]
fn a_team_that_may_hold_nothing_anywhere_is_refused() {
    let quotas = "quotas = [{ cluster = \"east\", accelerators = 512 }, { accelerators = 600 }]";
    let text = mutate(
        quotas,
        "quotas = [{ accelerators = 0, borrowing_limit = 0 }]",
    );
    let (line, field, message) = error_of(&text);
    assert_eq!(field, "tenants[0].teams[0].quotas[0].borrowing_limit");
    assert_eq!(line, line_of(&text, "quotas = "));
    assert!(
        message.contains("lets the team hold no accelerator anywhere"),
        "{message}"
    );
    // The fleet's one cluster capped at 0 is the same.
    let text = mutate(
        quotas,
        "quotas = [{ cluster = \"east\", accelerators = 0, borrowing_limit = 0 }]",
    );
    let (_, field, message) = error_of(&text);
    assert_eq!(field, "tenants[0].teams[0].quotas");
    assert!(message.contains("every cluster's quota is 0"), "{message}");
    // Beside a second cluster it keeps the team off `east` only.
    let text = mutate(
        quotas,
        "quotas = [{ cluster = \"east\", accelerators = 0, borrowing_limit = 0 }]",
    )
    .replacen(
        "[[tenants]]",
        "[[clusters]]\nname = \"west\"\nprovider = \"cloud\"\nregion = \"us-west-2\"\n\
         accelerator = \"H100\"\nnodes = 4\ncapacity = \"on_demand\"\nnode_mtbf_hours = 5000.0\nrepair_hours = 12.0\n\n\
         [[tenants]]",
        1,
    );
    load(&text).expect("a cap of 0 on one cluster of two");
}

/// One Slurm partition is one cluster: a second cluster on the same partition of the same Slurm
/// is refused at its `partition`; on another Slurm (another slurmrestd) it is its own.
#[test]
fn two_clusters_on_one_slurm_partition_are_refused() {
    let text = |slurm: &str| {
        format!(
            "{}\n[[clusters]]\nname = \"west\"\nprovider = \"cloud\"\nregion = \"us-west-2\"\n\
             accelerator = \"H100\"\nnodes = 4\ncapacity = \"on_demand\"\n\
             node_mtbf_hours = 5000.0\nrepair_hours = 12.0\nbackend = \"slurm\"\n\
             slurm = {{ {slurm} }}\n",
            mutate(
                "repair_hours = 12.0",
                "repair_hours = 12.0\nbackend = \"slurm\"\nslurm = { partition = \"gpu\" }",
            )
        )
    };
    let bad = text("partition = \"gpu\"");
    let (line, field, message) = error_of(&bad);
    assert_eq!(field, "clusters[1].slurm.partition");
    let second = bad.rfind("slurm = { partition").expect("second");
    assert_eq!(line, bad[..second].lines().count() + 1);
    assert!(
        message
            .contains("as cluster \"east\" does on the same Slurm: one partition is one cluster"),
        "{message}"
    );
    load(&text("partition = \"gpu2\"")).expect("another partition");
    load(&text(
        "partition = \"gpu\", rest_url = \"http://other:6820\", token_env = \"T\"",
    ))
    .expect("another Slurm");
}
