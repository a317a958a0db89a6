//! docs/slurm.md stays true: its fleet example loads as a Slurm cluster.

use switchyard_core::fleet::{ClusterBackend, Fleet};

#[test]
fn the_cluster_in_docs_slurm_md_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/slurm.md");
    let doc = std::fs::read_to_string(path).expect("docs/slurm.md exists");
    let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed block");
    let text = format!(
        "[[providers]]\nname = \"colossus\"\nkind = \"supercomputer\"\n[[providers.contracts]]\naccelerator = \"H100\"\nreserved = {{ accelerators = 8192, price = 2.0, term_months = 12 }}\n{}",
        &doc[start..end]
    );
    let fleet = Fleet::from_toml(&text, "docs/slurm.md").expect("the documented cluster is valid");
    let ClusterBackend::Slurm(s) = &fleet.clusters[0].backend else {
        panic!("expected a Slurm cluster");
    };
    assert_eq!(s.partition, "gpu");
    assert_eq!(s.command.as_deref(), Some("srun ./train.sh"));
}
