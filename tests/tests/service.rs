//! Running the node as a service: the systemd unit in `contrib/systemd` passes
//! `systemd-analyze verify` without a warning, and the node tells the service manager it is
//! ready (`READY=1` on `NOTIFY_SOCKET`) once it bootstrapped, and that it stops at SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hyperdht_tests::procs::binary;

fn systemd_analyze_missing() -> Option<String> {
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!have).then(|| "systemd-analyze is not installed".to_string())
}

fn the_systemd_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/hyperdht.service");
    let text = std::fs::read_to_string(&unit).expect("the unit");
    assert!(
        text.contains("ExecStart=/usr/local/bin/hyperdht "),
        "{text}"
    );
    // verify checks that ExecStart's program exists: point it at the one just built.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd");
    std::fs::create_dir_all(&dir).expect("dir");
    let copy = dir.join("hyperdht.service");
    let exe = binary("hyperdht");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/hyperdht", &exe.display().to_string()),
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {err}");
    // Unknown or misspelt keys are only warnings to verify: none allowed.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("hyperdht.service"))
        .collect();
    assert!(ours.is_empty(), "verify warned: {ours:?}");
}

fn the_node_notifies_ready_then_stopping() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("notify");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("sock-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let child = Command::new(binary("hyperdht"))
        .args(["--host", "127.0.0.1", "-q"])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    assert!(first.contains("STATUS=serving on 127.0.0.1:"), "{first:?}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let n = sock.recv(&mut buf).expect("a second notification");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    let _ = std::fs::remove_file(&path);
}

fn main() {
    use hyperdht_tests::trial;
    hyperdht_tests::run_trials(vec![
        trial(
            "the_systemd_unit_verifies",
            systemd_analyze_missing(),
            the_systemd_unit_verifies,
        ),
        trial(
            "the_node_notifies_ready_then_stopping",
            None,
            the_node_notifies_ready_then_stopping,
        ),
    ]);
}
