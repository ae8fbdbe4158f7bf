//! What the bench binaries share: running the real binary and measuring it, and a lean load
//! client. Each binary uses a part of it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_auditsync");

#[path = "../../tests/support/mod.rs"]
pub mod support;
pub use support::line;

pub mod vector;

/// Writes `n` catalog-valid uevents-shaped events to `path`: the test suite's line with the
/// longer GraphQL field list of the seed sample, about 457 bytes each (the 457 MB
/// file for 1M events).
pub fn write_events(path: &Path, n: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let mut event = line(i);
        event["requestPayload"] = format!(
            "[\"_id\",\"name\",\"{i}\",\"firstName\",\"lastName\",\"email\",\"created\",\"aspects{{_id name}}\",\"teams{{_id name admins{{_id email}}}}\",\"projects{{_id name}}\"]"
        )
        .into();
        serde_json::to_writer(&mut out, &event).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

/// How long a floor takes: `tool args < input > /dev/null`; `None` if the tool is missing
/// or fails.
pub fn floor(tool: &str, args: &[&str], input: &Path) -> Option<Duration> {
    let file = std::fs::File::open(input).ok()?;
    let start = Instant::now();
    let status = Command::new(tool)
        .args(args)
        .stdin(file)
        .stdout(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| start.elapsed())
}

/// Runs a command to completion; returns its wall time and peak RSS in MiB (sampled from
/// /proc: VmHWM only grows, so the last sample before exit is the peak, give or take 10 ms).
pub fn measure(mut cmd: Command) -> (Duration, f64) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0f64;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "{cmd:?} failed: {err}");
            break;
        }
        if let Some(mib) = peak_rss_mib(child.id()) {
            peak = peak.max(mib);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (start.elapsed(), peak)
}

/// The peak RSS (VmHWM) of a running process in MiB; `None` once it has exited.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

pub fn auditsync(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AUDITSYNC_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AUDITSYNC_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// A keep-alive HTTP/1.1 connection that posts bodies and reads the answers, and nothing
/// else: a load generator must cost far less than the server it loads on a 2-core machine,
/// which a general client with its own runtime per connection does not (reqwest's blocking
/// client halved the measured rates). Tests use reqwest.
pub struct LoadClient {
    reader: std::io::BufReader<std::net::TcpStream>,
    addr: std::net::SocketAddr,
}

impl LoadClient {
    /// Connects to `addr` (loopback only).
    pub fn connect(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        assert!(addr.ip().is_loopback(), "benchmarks talk to loopback only");
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            reader: std::io::BufReader::new(stream),
            addr,
        })
    }

    /// POSTs `body` to /v1/events; returns the status and the answer's body.
    pub fn post(
        &mut self,
        content_type: &str,
        token: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::{BufRead, Read, Write};
        let mut request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.reader.get_mut().write_all(&request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        Ok((status, answer))
    }
}
