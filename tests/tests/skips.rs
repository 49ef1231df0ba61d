//! A test that cannot run on this machine is reported as ignored in the summary, never as
//! passed, and fails under CI: the wire-fixture test that needs node, run with node hidden.

use std::process::Command;

fn run_fixtures(ci: bool) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "test",
        "-q",
        "-p",
        "hyperdht-tests",
        "--test",
        "wire_fixtures",
    ])
    .env("HYPERDHT_TESTS_HIDE_NODE", "1")
    .env_remove("CI");
    if ci {
        cmd.env("CI", "true");
    }
    let out = cmd.output().expect("cargo test");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_test_that_cannot_run_shows_as_ignored_and_fails_under_ci() {
    let (ok, text) = run_fixtures(false);
    assert!(ok, "{text}");
    assert!(text.contains("1 passed; 0 failed; 1 ignored"), "{text}");
    assert!(text.contains("SKIPPED the_committed_fixtures"), "{text}");
    let (ok, text) = run_fixtures(true);
    assert!(!ok, "under CI a missing tool fails: {text}");
    assert!(text.contains("cannot run under CI"), "{text}");
}
