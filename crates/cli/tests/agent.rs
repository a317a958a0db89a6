//! `switchyard agent` without a server: discovery output and input errors.

use std::process::Command;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn discover_prints_the_node_it_would_register() {
    let out = switchyard()
        .args([
            "agent",
            "--discover",
            "--json",
            "--accelerators",
            "3",
            "--cluster",
            "lab",
        ])
        .output()
        .expect("run switchyard agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON node");
    assert_eq!(node["cluster"], "lab");
    assert_eq!(node["accelerators"].as_array().map(Vec::len), Some(3));
    assert!(node["cpus"].as_u64().is_some_and(|c| c >= 1));

    let out = switchyard()
        .args(["agent", "--discover", "--accelerators", "2"])
        .output()
        .expect("run switchyard agent");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 × declared"), "{text}");
}

#[test]
fn bad_input_is_exit_code_2() {
    let out = switchyard()
        .args(["agent", "--server", "http://127.0.0.1:1"])
        .env_remove("SWITCHYARD_TOKEN")
        .output()
        .expect("run switchyard agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));

    let out = switchyard()
        .args(["agent", "--server", "https://x", "--token", "t"])
        .output()
        .expect("run switchyard agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}
