//! A headless browser for the status page's test: Debian's Chromium and its ChromeDriver,
//! installed from apt when missing, the driver listening on a loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Where Debian puts them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs `chromium` and `chromium-driver` unless both are there.
fn ensure_installed() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    eprintln!("    apt-get install chromium chromium-driver");
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !update.success() {
        return Err("apt-get update failed".into());
    }
    let install = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !install.success() || !Path::new(CHROMEDRIVER).exists() {
        return Err("apt-get install chromium chromium-driver failed".into());
    }
    Ok(())
}

/// Starts ChromeDriver on `port` (loopback only).
pub fn start(port: u16, log: std::fs::File) -> Result<Child, String> {
    ensure_installed()?;
    Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start chromedriver: {e}"))
}
