//! Project automation: `cargo xtask <task>`.
//!
//! - `test`: format check, clippy with `-D warnings`, then starts the emulators (installing
//!   them if missing, PostgreSQL from apt included) and runs every test of the workspace
//!   against them.
//! - `bench`: CLI ingest of a 1M-event file (`bench ingest [N]` runs only that); export with manifests on and off and `verify-archive` against `sha256sum` (`bench archive [N]`); ingest and export on SQLite and on PostgreSQL with one and three replicas (`bench replicas [N]`); end to end into S3 on moto and a volume, beside `cat`, `gzip -6` and `zstd -3` (`bench e2e [N] [--backlog M] [--runs R] [--only abcdef]`, only when asked; with `AUDITSYNC_BENCH_VECTOR=PATH`, Vector beside (a) and (c)); HTTP ingest throughput and latency; sync (volume and S3 on moto, beside `cp -r`
//!   and boto3) and a 1M-event range export; export throughput and peak RSS at two
//!   backlog sizes, beside the floors.
//!
//! Kept dependency-free so that it builds in seconds on a fresh machine.

mod browser;
mod emulators;
mod postgres;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("emulators") => serve_emulators(),
        _ => {
            eprintln!("usage: cargo xtask <test|bench|emulators> [args]\n\n  test       fmt check, clippy -D warnings, emulators, every test\n  bench      ingest and export benchmarks (`bench ingest [N]`: CLI ingest only; `bench archive [N]`: manifests and verify-archive only; `bench e2e [N] [--backlog M] [--runs R] [--only abcdef]`: end to end into S3 and a volume; a backlog size: that export only)\n  emulators  start the emulators and print their environment, until stdin closes");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    if in_ci() {
        // A fresh clone never reuses incremental state, and it roughly doubles the target
        // dir: one CI run failed with "No space left on device".
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    cmd
}

fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v == "true")
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or `target` in the workspace.
fn target_dir() -> PathBuf {
    env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
}

/// Under `CI=true`, prints the target dir's size and the free space beside it, so that a
/// CI run that fills its disk says so before the compiler's error does.
fn report_disk() {
    if !in_ci() {
        return;
    }
    let size = Command::new("du").arg("-sh").arg(target_dir()).output();
    let free = Command::new("df")
        .arg("-h")
        .arg("--output=avail")
        .arg(root())
        .output();
    if let (Ok(size), Ok(free)) = (size, free) {
        let size = String::from_utf8_lossy(&size.stdout);
        let free = String::from_utf8_lossy(&free.stdout);
        eprintln!(
            "    disk: target {}, free {}",
            size.split_whitespace().next().unwrap_or("?"),
            free.split_whitespace().last().unwrap_or("?")
        );
    }
}

fn run(step: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("==> {step}");
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    eprintln!("<== {step}: {:.1} s", started.elapsed().as_secs_f64());
    report_disk();
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn test(extra: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("cargo fmt --check", fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;
    eprintln!("==> emulators");
    let emulators = emulators::Emulators::start(&root())?;
    let mut tests = cargo();
    tests.args(["test", "--workspace"]).args(extra);
    tests.envs(emulators.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let result = run("cargo test --workspace", tests);
    drop(emulators);
    result?;
    features_select_sinks()?;
    eprintln!(
        "xtask test: all green in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts the emulators and prints `export` lines for a shell, then runs until stdin closes
/// (or the process is stopped): for running single tests by hand.
fn serve_emulators() -> Result<(), String> {
    let emulators = emulators::Emulators::start(&root())?;
    for (k, v) in &emulators.env {
        println!("export {k}={v}");
    }
    use std::io::Read;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

/// `auditsync ingest FILE` of 1M events (or the size given), three runs.
fn cli_ingest_bench(extra: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "auditsync", "--bench", "cli_ingest", "--"])
        .args(extra);
    run("CLI ingest benchmark", cmd)
}

/// Export with manifests on and off, and `verify-archive` against `sha256sum`, on 1M
/// events (or the size given).
fn archive_bench(extra: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "auditsync", "--bench", "archive", "--"])
        .args(extra);
    run("archive benchmark", cmd)
}

/// HTTP ingest and scheduled export on SQLite and on PostgreSQL with one and three
/// replicas.
fn replicas_bench(extra: &[String]) -> Result<(), String> {
    bench_with_emulators("replicas", "replicas benchmark", extra)
}

/// The end-to-end benchmark (input to S3 on moto, or to a volume, beside the floors).
fn e2e_bench(extra: &[String]) -> Result<(), String> {
    bench_with_emulators("e2e", "end-to-end benchmark", extra)
}

/// Runs the runner's bench `name` with the emulators started (PostgreSQL among them) and
/// their environment passed; stops them after.
fn bench_with_emulators(name: &str, title: &str, extra: &[String]) -> Result<(), String> {
    let emulators = emulators::Emulators::start(&root())?;
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "auditsync", "--bench", name, "--"])
        .args(extra);
    cmd.envs(emulators.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let result = run(title, cmd);
    drop(emulators);
    result
}

/// A binary built with only some features lists exactly those sinks, formatters and stores.
fn features_select_sinks() -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "auditsync",
        "--no-default-features",
        "--features",
        "sqlite,s3,ndjson",
    ]);
    run(
        "cargo build -p auditsync --no-default-features --features sqlite,s3,ndjson",
        build,
    )?;
    let out = Command::new(target_dir().join("debug/auditsync"))
        .arg("sinks")
        .output()
        .map_err(|e| format!("cannot run auditsync sinks: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("sinks: s3\n")
        && text.contains("formatters: ndjson\n")
        && text.contains("stores: sqlite\n")
    {
        eprintln!(
            "<== `auditsync sinks` of that build: sinks: s3; formatters: ndjson; stores: sqlite"
        );
        Ok(())
    } else {
        Err(format!("a build with features s3,ndjson lists:\n{text}"))
    }
}

fn bench(extra: &[String]) -> Result<(), String> {
    if extra.first().map(String::as_str) == Some("e2e") {
        return e2e_bench(&extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("ingest") {
        return cli_ingest_bench(&extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("archive") {
        return archive_bench(&extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("replicas") {
        return replicas_bench(&extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("tenants") {
        return bench_with_emulators("tenants", "tenants benchmark", &extra[1..]);
    }
    cli_ingest_bench(&[])?;
    archive_bench(&[])?;
    let mut ingest = cargo();
    ingest.args(["bench", "-p", "auditsync", "--bench", "ingest"]);
    run("ingest benchmark", ingest)?;
    let sizes: Vec<String> = if extra.is_empty() {
        vec!["100000".into(), "1000000".into()]
    } else {
        extra.to_vec()
    };
    for size in sizes {
        let mut cmd = cargo();
        cmd.args([
            "bench",
            "-p",
            "auditsync-engine",
            "--bench",
            "export",
            "--",
            &size,
        ]);
        run(&format!("export benchmark, backlog {size}"), cmd)?;
    }
    replicas_bench(&[])?;
    // Sync on volumes and on moto (against cp -r and boto3), and a 1M-event range export.
    let emulators = emulators::Emulators::start(&root())?;
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "auditsync", "--bench", "sync_range"]);
    cmd.envs(emulators.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let result = run("sync and range-export benchmark", cmd);
    drop(emulators);
    result
}
