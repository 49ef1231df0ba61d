//! Every Rust code block of the README is an example of the workspace, verbatim (so that it
//! is compiled, and runs: `cargo run -p hyperdht --example readme`), and paste-able: no
//! rustdoc-hidden `# ` lines.

use std::path::Path;

#[test]
fn every_rust_block_of_the_readme_is_a_compiled_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let examples: Vec<String> = std::fs::read_dir(root.join("crates/hyperdht/examples"))
        .expect("examples")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```rust") {
        let after = &rest[start..];
        let body_start = after.find('\n').expect("a line") + 1;
        let body_len = after[body_start..].find("\n```").expect("a closing fence") + 1;
        let body = &after[body_start..body_start + body_len];
        assert!(
            !body.lines().any(|l| l.trim_start().starts_with("# ")),
            "a hidden rustdoc line cannot be pasted: {body}"
        );
        assert!(
            examples.iter().any(|e| e == body),
            "this README block is not an example file verbatim:\n{body}"
        );
        blocks += 1;
        rest = &after[body_start + body_len..];
    }
    assert!(blocks >= 1, "the README shows the library example");
}
