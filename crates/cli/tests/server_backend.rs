//! `switchyard server` picks its backend from the fleet: the Slurm backend for clusters with
//! `backend = "slurm"`, refusing settings it cannot honour before it listens.

use std::process::Command;

#[test]
fn a_slurmrestd_cluster_is_refused_with_the_reason() {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md"))
        .expect("docs/fleet.md");
    let start = base.find("```toml\n").expect("an example") + "```toml\n".len();
    let end = start + base[start..].find("```").expect("closed");
    let fleet = base[start..end].replacen(
        "name = \"colossus-1\"\n",
        "name = \"colossus-1\"\nbackend = \"slurm\"\nslurm = { partition = \"gpu\", rest_url = \"http://127.0.0.1:6820\", token_env = \"SLURM_JWT\" }\n",
        1,
    );
    assert_ne!(fleet, base[start..end], "the example names colossus-1");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("slurmrestd-fleet.toml");
    std::fs::write(&path, fleet).expect("write fleet");
    let db = format!("sqlite://{}", dir.join("slurmrestd-fleet.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "server",
            "--fleet",
            path.to_str().expect("utf-8"),
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("colossus-1") && stderr.contains("http://127.0.0.1:6820"),
        "{stderr}"
    );
}
