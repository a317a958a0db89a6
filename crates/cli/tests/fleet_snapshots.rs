//! Snapshots of the fleet verbs' human output: a change to the default fleet, the catalog or the
//! table layout shows up as a reviewable diff.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn fleet_show_default() {
    insta::assert_snapshot!(run(&["fleet", "show"]));
}

#[test]
fn fleet_accelerators() {
    insta::assert_snapshot!(run(&["fleet", "accelerators"]));
}
