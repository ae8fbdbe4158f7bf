//! Helpers shared by the service tests and the ingest benchmark: a minimal HTTP/1.1 client
//! (so that tests can send exactly the bytes they mean, bad ones included) and a handle on
//! a running `auditsync run`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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
        })
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
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        self.read_response()
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
        Ok(Response {
            status,
            headers,
            body,
        })
    }
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
    let mut child = Command::new(binary)
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
    let name = path.to_string_lossy();
    let mut text = String::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(&body[..])
            .unwrap()
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    } else {
        text = String::from_utf8(body).unwrap();
    }
    text
}

/// Reads every exported record (NDJSON or CSV) back as a JSON object; panics on a duplicate.
pub fn read_back(root: &Path) -> HashMap<u64, Value> {
    let mut records = HashMap::new();
    for path in files_under(root) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.starts_with(".auditsync-tmp"),
            "temporary file left behind: {path:?}"
        );
        let text = decompress(&path);
        let rows: Vec<Value> = if name.contains(".csv") {
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
            assert!(text.ends_with('\n'), "{path:?} does not end with a newline");
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        for row in rows {
            let n = row["requestParams"]["n"].as_u64().unwrap();
            assert!(records.insert(n, row).is_none(), "event {n} exported twice");
        }
    }
    records
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
        "nameHints": if i % 7 == 0 { json!(["Project", "ProjectRelease"]) } else { json!(["User"]) },
        "userEmail": format!("user{i}@example.com"),
        "customerName": if i % 2 == 0 { "acme, inc." } else { "Ünïcode \"quoted\"\nnewline" },
        "responseCode": if i % 11 == 0 { 500 } else { 200 },
        "requestParams": {"n": i, "email": format!("\"u{i}@example.com\""), "tags": ["a", "b,c"]},
        "requestPayload": format!("[\"_id\",\"name\",\"{i}\"]"),
        "latencyInMillis": i % 97,
    })
}
