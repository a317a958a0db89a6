//! Property tests for the fleet loader's invariants.

use proptest::prelude::*;
use switchyard_core::fleet::{DEFAULT_FLEET_TOML, Fleet, LevelKind};

/// A generated cluster: topology multipliers chosen so that every level divides the next.
#[derive(Debug, Clone)]
struct GenCluster {
    per_node: u32,
    scale_up: u32,
    racks_per: u32,
    blocks_per: Option<u32>,
    units: u32,
}

fn gen_cluster() -> impl Strategy<Value = GenCluster> {
    (
        1u32..=8,
        1u32..=1,
        1u32..=8,
        proptest::option::of(1u32..=8),
        1u32..=50,
    )
        .prop_map(
            |(per_node, scale_up, racks_per, blocks_per, units)| GenCluster {
                per_node,
                scale_up,
                racks_per,
                blocks_per,
                units,
            },
        )
}

fn render(clusters: &[GenCluster]) -> String {
    let total: u64 = clusters
        .iter()
        .map(|c| {
            let outer = c.scale_up * c.racks_per * c.blocks_per.unwrap_or(1);
            u64::from(outer * c.units * c.per_node)
        })
        .sum();
    let mut text = format!(
        "name = \"gen\"\n[[providers]]\nname = \"p\"\nkind = \"cloud\"\n[[providers.contracts]]\naccelerator = \"H100-SXM\"\nreserved = {{ accelerators = {total}, price = 2.0, term_months = 12 }}\n"
    );
    for (i, c) in clusters.iter().enumerate() {
        let rack = c.scale_up * c.racks_per;
        let outer = rack * c.blocks_per.unwrap_or(1);
        text.push_str(&format!(
            "[[clusters]]\nname = \"c{i}\"\nprovider = \"p\"\nregion = \"r\"\naccelerator = \"H100-SXM\"\nnodes = {}\naccelerators_per_node = {}\nnode_mtbf_hours = 1000.0\nrepair_hours = 1.0\n[clusters.topology]\nscale_up = {{ nodes = {} }}\nrack = {{ nodes = {rack} }}\n",
            outer * c.units,
            c.per_node,
            c.scale_up
        ));
        if c.blocks_per.is_some() {
            text.push_str(&format!("block = {{ nodes = {outer} }}\n"));
        }
    }
    text.push_str("[[tenants]]\nname = \"o\"\n[[tenants.teams]]\nname = \"t\"\nquotas = [{ cluster = \"c0\", accelerators = 1 }]\n");
    text
}

proptest! {
    /// Any fleet whose levels nest loads, and the loaded model keeps the nesting and the counts.
    #[test]
    fn nested_topologies_load_and_keep_their_shape(clusters in prop::collection::vec(gen_cluster(), 1..5)) {
        let text = render(&clusters);
        let fleet = Fleet::from_toml(&text, "gen.toml").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(fleet.clusters.len(), clusters.len());
        for cluster in &fleet.clusters {
            let levels = &cluster.topology.levels;
            prop_assert_eq!(levels.first().map(|l| l.kind), Some(LevelKind::ScaleUp));
            prop_assert_eq!(levels.last().map(|l| (l.kind, l.nodes)), Some((LevelKind::Cluster, cluster.nodes)));
            for pair in levels.windows(2) {
                prop_assert_eq!(pair[1].nodes % pair[0].nodes, 0, "{:?} does not nest", pair);
                prop_assert!(pair[0].kind < pair[1].kind);
            }
        }
        let expected: u64 = fleet.clusters.iter().map(|c| u64::from(c.nodes) * u64::from(c.accelerators_per_node)).sum();
        prop_assert_eq!(fleet.total_accelerators(), expected);
    }

    /// Changing a cluster's node count by a non-multiple of its outermost unit is always rejected,
    /// and the error points at that cluster's `nodes` line.
    #[test]
    fn uneven_node_counts_are_rejected(c in gen_cluster(), delta in 1u32..1000) {
        let outer = c.scale_up * c.racks_per * c.blocks_per.unwrap_or(1);
        prop_assume!(outer > 1 && delta % outer != 0);
        let text = render(std::slice::from_ref(&c));
        let good_nodes = format!("nodes = {}\n", outer * c.units);
        let bad = text.replacen(&good_nodes, &format!("nodes = {}\n", outer * c.units + delta), 1);
        let err = Fleet::from_toml(&bad, "gen.toml").expect_err("uneven");
        prop_assert_eq!(err.field.as_str(), "clusters[0].nodes");
        let line = bad.lines().position(|l| l.starts_with("nodes = ")).map(|i| i + 1);
        prop_assert_eq!(Some(err.line), line);
    }

    /// Arbitrary edits of a real fleet file never panic, and any error points inside the file.
    #[test]
    fn mangled_files_never_panic(cut in 0usize..DEFAULT_FLEET_TOML.len(), insert in "[ -~\n]{0,12}", keep in 0usize..200) {
        let mut text = DEFAULT_FLEET_TOML.to_owned();
        let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let end = (cut + keep).min(text.len());
        let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text.replace_range(cut..end, &insert);
        if let Err(err) = Fleet::from_toml(&text, "mangled.toml") {
            prop_assert!(err.line >= 1 && err.line <= text.lines().count() + 1, "line {} out of range", err.line);
            prop_assert!(!err.message.is_empty());
        }
    }
}
