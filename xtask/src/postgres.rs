//! A PostgreSQL server of the tests' own: installed from apt when missing, initialized in a
//! temporary directory, listening on a free loopback port, run as an unprivileged user when
//! this runs as root (PostgreSQL refuses root), and stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The unprivileged user the server runs as when the tests run as root.
const SERVER_USER: &str = "auditsync-pg";

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    // The newest major version: directory names are numbers.
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{step}: cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{step} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The server's binaries, installed from apt if there are none.
fn ensure_installed() -> Result<PathBuf, String> {
    if let Some(bin) = bin_dir() {
        return Ok(bin);
    }
    if !is_root() {
        return Err("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and this is not root: `apt-get install postgresql` first".into());
    }
    eprintln!("    apt-get install postgresql");
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        "apt-get install postgresql",
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "postgresql",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    bin_dir().ok_or_else(|| "apt installed postgresql, but no initdb was found".into())
}

/// A command run as the server's user: itself when not root; otherwise through `setpriv`,
/// which execs in place, so the PID we hold is the program's own.
fn as_server_user(program: &Path) -> Result<Command, String> {
    if !is_root() {
        return Ok(Command::new(program));
    }
    let exists = Command::new("id")
        .arg(SERVER_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(
            "useradd",
            Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ]),
        )?;
    }
    let id = |flag: &str| -> Result<String, String> {
        let out = Command::new("id")
            .args([flag, SERVER_USER])
            .output()
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", id("-u")?))
        .arg(format!("--regid={}", id("-g")?))
        .arg("--clear-groups")
        .arg(program);
    Ok(cmd)
}

/// Initializes a cluster in `dir` and starts its server on `port`; returns the server.
pub fn start(dir: &Path, port: u16, log: std::fs::File) -> Result<Child, String> {
    let bin = ensure_installed()?;
    let data = dir.join("postgres");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    if is_root() {
        // The user exists once as_server_user has run.
        as_server_user(Path::new("/bin/true"))?;
        run(
            "chown",
            Command::new("chown").args(["-R", SERVER_USER]).arg(&data),
        )?;
    }
    run(
        "initdb",
        as_server_user(&bin.join("initdb"))?
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
    )?;
    as_server_user(&bin.join("postgres"))?
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(&data)
        .args(["-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))
}

/// Stops the server by its PID with a fast shutdown (SIGINT), so that it stops its own
/// backends; the caller then waits for it.
pub fn stop(server: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status();
}
