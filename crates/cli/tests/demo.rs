//! `switchyard demo`, the README's first command, end to end: it must narrate the lost node,
//! the restart from a checkpoint, and a final model identical to an uninterrupted run's.

use std::process::Command;

#[test]
fn the_demo_runs_and_says_what_happened() {
    let dir = std::env::temp_dir().join(format!("switchyard-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--steps", "160", "--dir"])
        .arg(&dir)
        .output()
        .expect("run switchyard demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "agents registered",
        "submitted training run",
        "submitted inference service",
        ">>> killing demo-node-",
        "NODE LOST",
        "resuming from checkpoint step",
        ": done after",
        "identical to an uninterrupted run",
        "inference service answered",
        "switchyard logs",
        "/metrics",
        "/dashboard",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
    assert!(dir.join("switchyard.db").exists());
    assert!(dir.join("fleet.toml").exists());
    // A second demo into the same directory is refused, not mixed in.
    let again = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .expect("run switchyard demo");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass an empty --dir"));
    let _ = std::fs::remove_dir_all(&dir);
}
