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
        let request = request_bytes(self.addr, content_type, token, body);
        self.reader.get_mut().write_all(&request)?;
        let (mut head, mut line) = (Head::default(), String::new());
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if let Some((status, length)) = head.take(&line)? {
                let mut answer = vec![0; length];
                self.reader.read_exact(&mut answer)?;
                return Ok((status, answer));
            }
        }
    }
}

/// A POST to /v1/events with `body`, as bytes to write.
fn request_bytes(
    addr: std::net::SocketAddr,
    content_type: &str,
    token: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// An answer's head, read line by line, for the blocking and the polled clients alike.
#[derive(Default)]
struct Head {
    status: Option<u16>,
    length: usize,
}

impl Head {
    /// Takes the head's next line; once the blank line that ends it comes, the answer's
    /// status and the length of its body.
    fn take(&mut self, line: &str) -> std::io::Result<Option<(u16, usize)>> {
        let line = line.trim_end();
        let Some(status) = self.status else {
            let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            self.status = Some(
                status.ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?,
            );
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some((status, self.length)));
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                self.length = value.trim().parse().unwrap_or(0);
            }
        }
        Ok(None)
    }
}

/// Posts `count` bodies (the i-th is `body(i)`) to /v1/events over `connections` keep-alive
/// connections, each waiting for its answer before it sends again; every answer must be
/// 200. Returns the wall time in seconds.
///
/// The connections are spread over one thread per core, each polling its share, as `wrk`
/// does: a thread per connection (the blocking [`LoadClient`]) is woken once per answer, and
/// on this 2-core machine the server paid for those wake-ups in its own `writev` and lost a
/// fifth of the cores to them and the client.
pub fn post_all<'b>(
    addr: std::net::SocketAddr,
    token: &str,
    connections: usize,
    content_type: &str,
    count: usize,
    body: impl Fn(usize) -> &'b [u8] + Sync,
) -> f64 {
    assert!(addr.ip().is_loopback(), "benchmarks talk to loopback only");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let mine = connections / threads + usize::from(t < connections % threads);
            let (next, body) = (&next, &body);
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .unwrap();
                runtime.block_on(futures_util::future::join_all((0..mine).map(|_| async {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let mut stream = tokio::io::BufReader::new(stream);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let (status, answer) =
                            post_async(&mut stream, addr, content_type, token, body(i))
                                .await
                                .unwrap();
                        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    }
                })));
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// [`LoadClient::post`] on a connection of [`post_all`].
async fn post_async(
    stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    addr: std::net::SocketAddr,
    content_type: &str,
    token: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let request = request_bytes(addr, content_type, token, body);
    stream.get_mut().write_all(&request).await?;
    let (mut head, mut line) = (Head::default(), String::new());
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        if let Some((status, length)) = head.take(&line)? {
            let mut answer = vec![0; length];
            stream.read_exact(&mut answer).await?;
            return Ok((status, answer));
        }
    }
}
