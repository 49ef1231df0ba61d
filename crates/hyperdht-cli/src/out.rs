//! [`Out`]: prints results as text or as one JSON object per line.

use std::io::Write;

use serde_json::Value;

/// How to print.
pub struct Out {
    /// One JSON object per line.
    pub json: bool,
    /// Print only what was asked for (no progress lines).
    pub quiet: bool,
}

impl Out {
    /// Prints `text`, or `json` in JSON mode.
    pub fn emit(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(stdout, "{}", json())
        } else {
            writeln!(stdout, "{}", text())
        };
        let _ = stdout.flush();
    }

    /// Prints a progress line (text mode only, not when quiet).
    pub fn note(&self, text: impl FnOnce() -> String) {
        if !self.json && !self.quiet {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", text());
            let _ = stdout.flush();
        }
    }
}
