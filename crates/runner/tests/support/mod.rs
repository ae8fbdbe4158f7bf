//! Helpers shared by the service tests and the ingest benchmark: a minimal HTTP/1.1 client
//! (so that tests can send exactly the bytes they mean, bad ones included) and a handle on
//! a running `auditsync run`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A temp dir with a config file, and the binary run against it.
pub struct Env {
    /// The temp dir.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
}

impl Env {
    pub fn new(config: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            config: dir.path().join("auditsync.json"),
            dir,
        };
        env.write_config(config);
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes the config with relative paths made absolute under the temp dir.
    pub fn write_config(&self, mut config: Value) {
        let base = self.dir.path();
        config["store"] = json!({"type": "sqlite", "path": base.join("db/audit.db")});
        if let Some(dests) = config.get_mut("destinations").and_then(Value::as_array_mut) {
            for d in dests {
                if let Some(root) = d["root"].as_str() {
                    d["root"] = json!(base.join(root));
                }
            }
        }
        std::fs::write(&self.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditsync"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env("AUDITSYNC_LOG", "warn");
        for (k, _) in std::env::vars() {
            if k.starts_with("AUDITSYNC_") && k != "AUDITSYNC_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "auditsync {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ingest(&self, lines: &[Value]) -> String {
        let file = self.path("input.ndjson");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&file, text).unwrap();
        self.ok(&["ingest", file.to_str().unwrap()])
    }

    /// Starts `auditsync run` on this config (whose `ingest.listen` should use port 0).
    pub fn start(&self) -> Server {
        start_server(
            Path::new(env!("CARGO_BIN_EXE_auditsync")),
            &self.config,
            &self.path("server.log"),
        )
    }

    pub fn events_held(&self) -> u64 {
        let out = self.ok(&["status"]);
        let first = out.lines().next().unwrap();
        first
            .strip_prefix("store: ")
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected status: {out}"))
    }
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
    /// Whether a response has been read on this connection, i.e. whether the server may
    /// since have closed it as idle or after a request whose body it did not read.
    reused: bool,
}

impl Client {
    /// Connects to `addr` (loopback only), with 30 s read and write timeouts.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        assert!(addr.ip().is_loopback(), "tests talk to loopback only");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            addr,
            reused: false,
        })
    }

    /// Replaces the connection by a fresh one when the server has closed it since the last
    /// response, as any HTTP client does before reusing a kept-alive connection. (The server
    /// closes after answering a request whose body it did not read, e.g. a 404.)
    fn reconnect_if_closed(&mut self) -> std::io::Result<()> {
        if !self.reused || !self.reader.buffer().is_empty() {
            return Ok(());
        }
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true)?;
        let mut probe = [0u8; 1];
        let closed = match stream.peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        };
        stream.set_nonblocking(false)?;
        if closed {
            *self = Self::connect(self.addr)?;
        }
        Ok(())
    }

    /// Writes `bytes` and reads the response. A server may answer before it has read the
    /// whole body (e.g. 413 once an event is over the limit) and close, so a write that
    /// fails because the peer closed is followed by an attempt to read that early answer.
    fn send_body_then_read(&mut self, bytes: &[u8]) -> std::io::Result<Response> {
        match self.reader.get_mut().write_all(bytes) {
            Ok(()) => self.read_response(),
            Err(e) if Self::is_stale_connection(&e) => self.read_response().map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    /// Whether `e` means the server had closed the connection.
    fn is_stale_connection(e: &std::io::Error) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            e.kind(),
            BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
        )
    }

    /// Sends raw bytes as the whole request head and body, then reads one response.
    pub fn raw(&mut self, request: &[u8]) -> std::io::Result<Response> {
        self.reader.get_mut().write_all(request)?;
        self.read_response()
    }

    /// Sends `body` with a Content-Length that claims `claimed` bytes, then closes the
    /// sending side, and reads the response.
    pub fn truncated(
        &mut self,
        path: &str,
        content_type: &str,
        token: Option<&str>,
        body: &[u8],
        claimed: usize,
    ) -> std::io::Result<Response> {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {claimed}\r\n\r\n",
            self.addr
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.shutdown(Shutdown::Write)?;
        self.read_response()
    }

    /// A request with the given headers and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        self.reconnect_if_closed()?;
        if body.len() > 1 << 20 {
            // Let the server refuse a large body before it is sent (it answers 413 at
            // once); otherwise it may close on unread data and the answer is lost.
            head.push_str("Expect: 100-continue\r\n\r\n");
            self.reader.get_mut().write_all(head.as_bytes())?;
            let first = self.read_response()?;
            if first.status != 100 {
                return Ok(first);
            }
            return self.send_body_then_read(body);
        }
        head.push_str("\r\n");
        // One write, so the body arrives with the head and a server that answers without
        // reading it can drain it and keep the connection.
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let was_reused = self.reused;
        match self.send_body_then_read(&request) {
            // A GET cannot have changed anything, so it is safe to send again when the
            // server closed the kept-alive connection just as it was reused.
            Err(e) if was_reused && method == "GET" && Self::is_stale_connection(&e) => {
                *self = Self::connect(self.addr)?;
                self.send_body_then_read(&request)
            }
            other => other,
        }
    }

    /// POST to /v1/events.
    pub fn post(
        &mut self,
        content_type: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<Response> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        self.request("POST", "/v1/events", &headers, body)
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                if k == "transfer-encoding" {
                    return Err(std::io::Error::other("chunked responses are not expected"));
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        self.reused = true;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// `auditsync token new`: a fresh token and its `sha256:` hash.
pub fn new_token() -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_auditsync"))
        .args(["token", "new"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("hash:  "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    assert!(
        token.starts_with("ast_") && hash.starts_with("sha256:"),
        "{text}"
    );
    (token, hash)
}

/// A running `auditsync run`.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Starts `auditsync run` with `config` (whose `ingest.listen` should use port 0) and waits
/// for its "listening on" line.
pub fn start_server(binary: &Path, config: &Path, log: &Path) -> Server {
    let log_file = std::fs::File::create(log).unwrap();
    let mut command = Command::new(binary);
    // Only the config file speaks: no AUDITSYNC_* override from the test's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("AUDITSYNC_") {
            command.env_remove(k);
        }
    }
    let mut child = command
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("AUDITSYNC_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = lines
        .next()
        .unwrap_or_else(|| {
            panic!(
                "server exited: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .unwrap();
    assert!(Instant::now() < deadline);
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    // keep draining stdout so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

impl Server {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }

    /// SIGKILLs it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files under `root`, sorted.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// A file's text, decompressed by its extension.
pub fn decompress(path: &Path) -> String {
    let body = std::fs::read(path).unwrap();
    decode(&path.to_string_lossy(), &body)
}

/// An object's text, decompressed by the extension of its name.
pub fn decode(name: &str, body: &[u8]) -> String {
    let mut text = String::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(body)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    } else {
        text = String::from_utf8(body.to_vec()).unwrap();
    }
    text
}

/// The records of one exported object (NDJSON or CSV, by its name) as JSON objects.
pub fn records(name: &str, body: &[u8]) -> Vec<Value> {
    let text = decode(name, body);
    if name.contains(".csv") {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                let cells = header
                    .iter()
                    .zip(r.iter())
                    .map(|(h, c)| (h.clone(), csv_cell(h, c)));
                Value::Object(cells.collect())
            })
            .collect()
    } else {
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} does not end with a newline"
        );
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// True for a record of auditsync's own actions (`auditsync.config.changed`, a download).
pub fn is_own_event(row: &Value) -> bool {
    let action = row["nameHints"][0].as_str().or(row["action"].as_str());
    action.is_some_and(|a| a.starts_with("auditsync.") || a.starts_with("audit_log."))
}

/// Adds records keyed by their `requestParams.n`, skipping auditsync's own events; panics on
/// a duplicate.
pub fn collect_records(into: &mut HashMap<u64, Value>, records: Vec<Value>) {
    for row in records {
        if is_own_event(&row) {
            continue;
        }
        let n = row["requestParams"]["n"].as_u64().unwrap();
        assert!(into.insert(n, row).is_none(), "event {n} exported twice");
    }
}

/// Reads every exported record under a volume root; panics on a duplicate or a temp file.
pub fn read_back(root: &Path) -> HashMap<u64, Value> {
    let mut all = HashMap::new();
    for path in files_under(root) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.starts_with(".auditsync-tmp"),
            "temporary file left behind: {path:?}"
        );
        let body = std::fs::read(&path).unwrap();
        collect_records(&mut all, records(&path.to_string_lossy(), &body));
    }
    all
}

/// A CSV cell of the uevents schema back to JSON, by its column's type.
pub fn csv_cell(column: &str, cell: &str) -> Value {
    match column {
        _ if cell.is_empty() => Value::Null,
        // json and string_array columns hold JSON text
        "nameHints" | "requestParams" | "requestPayload" => serde_json::from_str(cell).unwrap(),
        "createdAt" | "responseCode" | "latencyInMillis" => serde_json::from_str(cell).unwrap(),
        _ => Value::String(cell.to_string()),
    }
}

/// A uevents line with awkward content; `requestParams.n` identifies it.
pub fn line(i: u64) -> Value {
    json!({
        "opType": if i % 3 == 0 { "Mutation" } else { "Query" },
        "createdAt": 1_690_610_557_857u64 + i * 1_000,
        "nameHints": if i % 7 == 0 { json!(["User", "getUserTeam"]) } else { json!(["User"]) },
        "userEmail": format!("user{i}@example.com"),
        "customerName": if i % 2 == 0 { "acme, inc." } else { "Ünïcode \"quoted\"\nnewline" },
        "responseCode": if i % 11 == 0 { 500 } else { 200 },
        "requestParams": {"n": i, "email": format!("\"u{i}@example.com\""), "tags": ["a", "b,c"]},
        "requestPayload": format!("[\"_id\",\"name\",\"{i}\"]"),
        "latencyInMillis": i % 97,
    })
}
