//! Helpers shared by the service tests and the benchmarks: an HTTP client (reqwest, plus one
//! hand-made request no ordinary client sends) and a handle on a running `auditsync run`.

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

/// An HTTP client for the service on loopback: reqwest, keep-alive, 30 s timeouts.
pub struct Client {
    http: reqwest::blocking::Client,
    addr: SocketAddr,
}

impl Client {
    /// A client for the service at `addr` (loopback only).
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        assert!(addr.ip().is_loopback(), "tests talk to loopback only");
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self { http, addr })
    }

    /// A request with the given headers and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?;
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.addr))
            .body(body.to_vec());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().map_err(std::io::Error::other)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let body = response.bytes().map_err(std::io::Error::other)?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
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

    /// What no ordinary client sends: `body` with a Content-Length that claims `claimed`
    /// bytes, then the sending side closed. Written on a connection of its own; the answer
    /// is read until the server closes.
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
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.shutdown(Shutdown::Write)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad response {head:?}")))?;
        Ok(Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
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

/// Sends SIGTERM to `child` (by its PID) and waits for its exit status.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(ok.success(), "cannot send SIGTERM to {pid}");
    child.wait().unwrap()
}

/// A running `auditsync run`.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Starts `auditsync run` with `config` (whose `ingest.listen` should use port 0) and waits
/// for its "listening on" line, then until `/healthz` no longer answers `starting`.
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
    // It listens before the store's check at open ends; wait for that as a readiness probe
    // would, so that what a test asks first is not answered `starting`.
    let mut client = Client::connect(addr).unwrap();
    loop {
        let health = client.request("GET", "/healthz", &[], b"").unwrap();
        if health.status != 503 || health.json()["status"] != "starting" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still starting after 30 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, addr }
}

impl Server {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// SIGKILLs it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server still running when its test ends, or fails, is stopped: a failed test left its
/// replicas running once.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
    read_exported(root, false)
}

/// [`read_back`] of a volume that processes still write to, or that a process killed on
/// purpose wrote to: a put's temporary file (in flight, or left by the killed process
/// until the volume sink sweeps it) is skipped, not a failure.
pub fn read_back_skipping_temp_files(root: &Path) -> HashMap<u64, Value> {
    read_exported(root, true)
}

fn read_exported(root: &Path, skip_temp_files: bool) -> HashMap<u64, Value> {
    let mut all = HashMap::new();
    for path in files_under(root) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(".auditsync-tmp") {
            assert!(skip_temp_files, "temporary file left behind: {path:?}");
            continue;
        }
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
