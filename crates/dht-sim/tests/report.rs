//! `sim-report` end to end on tiny networks: it writes its document and plots where told
//! (under `target/`, never over docs/), with every section's table.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn sim_report_writes_its_document_and_plots() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a folder under target/");
    let out = dir.join("SCALE.md");
    let status = Command::new(env!("CARGO_BIN_EXE_sim-report"))
        .args([
            "--quick",
            "--sizes",
            "150",
            "--only",
            "size,growth",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("sim-report runs");
    assert!(status.success(), "{status}");
    let doc = std::fs::read_to_string(&out).expect("the document");
    assert!(
        doc.contains("| 150 | 100.0 % |"),
        "every lookup found the announcer:\n{doc}"
    );
    assert!(doc.contains("## A network growing from empty"), "{doc}");
    for plot in ["rounds_by_size", "growth"] {
        let svg = std::fs::read_to_string(dir.join("scale").join(format!("{plot}.svg")))
            .expect("the plot");
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{plot}: {}",
            &svg[..200.min(svg.len())]
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_sim-report"))
        .arg("--help")
        .output()
        .expect("--help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--quick"));
}
