//! Helpers for the workspace-level tests: the JavaScript reference, installed on demand.
//!
//! Tests that need `hyperdht@1.3.0` run as a [`trial`] with [`reference_missing`], and call
//! [`reference()`] in their body. It runs `npm ci` in `tests/interop` from the committed
//! lockfile once (under a file lock, so parallel tests and test binaries are safe), and
//! returns where the packages are. Without `node` or `npm` the trial is reported as ignored,
//! loudly, except when the `CI` environment variable is set: then it runs and fails. That is
//! the one way a test here is skipped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod agent;
pub mod js;
pub mod lab;
pub mod load;
pub mod perf;
pub mod procs;

/// The folder holding `package.json`, the lockfile, the scripts and the fixtures.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// The JavaScript reference, installed and ready to run.
#[derive(Debug, Clone)]
pub struct Reference {
    /// `tests/interop`, with its `node_modules` installed.
    pub dir: PathBuf,
}

impl Reference {
    /// A `node` command running `script` (a path relative to `tests/interop`).
    pub fn node(&self, script: &str) -> Command {
        let mut cmd = Command::new("node");
        cmd.current_dir(&self.dir).arg(script);
        cmd
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Logs to the test's output, filtered by `RUST_LOG` (nothing when it is unset). Call it at
/// the start of a test; later calls do nothing.
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// Whether the tests run under CI, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The reference, installed. For the body of a [`trial`] whose `missing` was
/// [`reference_missing`] (so it runs only where node and npm are): panics when they are
/// missing anyway, or when the install fails. Skipping is the trial's job alone.
pub fn reference() -> Reference {
    static INSTALLED: OnceLock<Result<Reference, String>> = OnceLock::new();
    // Checked once: the tools, then the install (each call after the first costs nothing).
    let installed = INSTALLED.get_or_init(|| match reference_missing() {
        Some(why) => Err(format!(
            "{why}: a test that needs the reference runs as a trial(.., reference_missing(), ..)"
        )),
        None => install().map_err(|e| format!("installing the JavaScript reference failed: {e}")),
    });
    match installed {
        Ok(r) => r.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn install() -> Result<Reference, String> {
    let dir = interop_dir();
    let lock_path = dir.join(".install.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;

    // `npm ci` once per lockfile: a stamp records the lockfile it installed.
    let lockfile = fs::read(dir.join("package-lock.json")).map_err(|e| e.to_string())?;
    let stamp_path = dir.join("node_modules").join(".hyperdht-rs-stamp");
    let wanted = format!("{:x}", fnv1a(&lockfile));
    if fs::read_to_string(&stamp_path).ok().as_deref() != Some(wanted.as_str()) {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("running npm ci: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        fs::write(&stamp_path, &wanted).map_err(|e| e.to_string())?;
    }
    Ok(Reference { dir })
}

/// A small stable hash (FNV-1a), enough to notice that the lockfile changed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// An address printed as JSON: `{"host": ..., "port": ...}` (the commands' model) or a
/// `"host:port"` string (the echo's and the reference script's).
pub fn json_addr(v: &serde_json::Value) -> Option<std::net::SocketAddrV4> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Object(o) => Some(std::net::SocketAddrV4::new(
            o.get("host")?.as_str()?.parse().ok()?,
            u16::try_from(o.get("port")?.as_u64()?).ok()?,
        )),
        _ => None,
    }
}

/// What a machine lacks to run the JavaScript reference, if anything.
/// `HYPERDHT_TESTS_HIDE_NODE=1` makes node and npm count as missing (the test that skips
/// are reported as ignored uses it).
pub fn reference_missing() -> Option<String> {
    let hidden = std::env::var_os("HYPERDHT_TESTS_HIDE_NODE").is_some_and(|v| v == "1");
    (hidden || !have("node") || !have("npm"))
        .then(|| "node and npm are needed to run the JavaScript reference".to_string())
}

/// A test that needs what the machine may lack (`missing` says what, if anything): reported
/// as ignored in the summary when it is missing, never as passed; under CI it runs and fails.
/// The test files that use it have `harness = false` and end in [`run_trials`].
pub fn trial(
    name: &str,
    missing: Option<String>,
    body: impl FnOnce() + Send + 'static,
) -> libtest_mimic::Trial {
    let ignored = match &missing {
        Some(why) if !under_ci() => {
            eprintln!("!!!!! SKIPPED {name}: {why} !!!!!");
            true
        }
        _ => false,
    };
    let label = name.to_string();
    libtest_mimic::Trial::test(name, move || {
        if let Some(why) = missing {
            return Err(format!("{label}: cannot run under CI: {why}").into());
        }
        body();
        Ok(())
    })
    .with_ignored_flag(ignored)
}

/// An async test body on a two-thread tokio runtime, as `#[tokio::test]` would run it.
pub fn block_on<F>(f: impl FnOnce() -> F + Send + 'static) -> impl FnOnce() + Send + 'static
where
    F: std::future::Future<Output = ()>,
{
    move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    }
}

/// Runs `trials` as libtest does (filters, `--ignored`, the summary) and exits.
pub fn run_trials(trials: Vec<libtest_mimic::Trial>) -> ! {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}

/// Where a test writes its report `name` (a Markdown file): `target/reports/` by default,
/// so that running the tests never rewrites committed files; `docs/` when
/// `HYPERDHT_WRITE_DOCS=1` is set, which is how the committed reports are regenerated
/// (README, "Hole punching behind real NATs").
pub fn report_path(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = if std::env::var_os("HYPERDHT_WRITE_DOCS").is_some_and(|v| v == "1") {
        root.join("docs")
    } else {
        root.join("target").join("reports")
    };
    let _ = fs::create_dir_all(&dir);
    dir.join(name)
}
