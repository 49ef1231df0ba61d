//! What the test files of this directory share.

/// Prints a figure and keeps it in `target/reports/defences/NAME.txt`, which the soak's
/// report (docs/RELIABILITY.md) includes.
macro_rules! report {
    ($name:expr, $($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/reports/defences");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{}.txt", $name)), line + "\n");
    }};
}
