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

/// A test CA and a server certificate for 127.0.0.1 signed by it, made with the openssl
/// command (installed from apt when missing): `(ca.pem, server.pem, server.key)` in `dir`.
fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let have_openssl = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_openssl {
        if !is_root() {
            return Err("the openssl command is missing: `apt-get install openssl` first".into());
        }
        eprintln!("    apt-get install openssl");
        run(
            "apt-get install openssl",
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", "openssl"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| e.to_string())?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(
        "openssl: test CA",
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=auditsync test CA",
            ])
            .args(ec)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca)
            .args(["-addext", "basicConstraints=critical,CA:TRUE"]),
    )?;
    run(
        "openssl: server key",
        Command::new("openssl")
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    )?;
    run(
        "openssl: server certificate",
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-out"])
            .arg(&cert)
            .arg("-extfile")
            .arg(&ext),
    )?;
    Ok((ca, cert, key))
}

/// Initializes a cluster in `dir` and starts its server on `port`, accepting plain and TLS
/// connections (its certificate signed by a test CA); returns the server and the CA file.
pub fn start(dir: &Path, port: u16, log: std::fs::File) -> Result<(Child, PathBuf), String> {
    let bin = ensure_installed()?;
    let data = dir.join("postgres");
    let tls = dir.join("postgres-tls");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
    let (ca, cert, key) = certificates(&tls)?;
    // The server refuses a key others can read.
    run("chmod", Command::new("chmod").arg("600").arg(&key))?;
    if is_root() {
        // Makes the server's user if needed.
        as_server_user(Path::new("/bin/true"))?;
        run(
            "chown",
            Command::new("chown")
                .args(["-R", SERVER_USER])
                .arg(&data)
                .arg(&key)
                .arg(&cert),
        )?;
    }
    run(
        "initdb",
        as_server_user(&bin.join("initdb"))?
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
    )?;
    let server = as_server_user(&bin.join("postgres"))?
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(&data)
        .args(["-c", "max_connections=200", "-c", "ssl=on"])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    Ok((server, ca))
}

/// Stops the server by its PID with a fast shutdown (SIGINT), so that it stops its own
/// backends; the caller then waits for it.
pub fn stop(server: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status();
}
