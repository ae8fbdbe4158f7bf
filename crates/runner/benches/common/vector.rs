//! Vector (<https://vector.dev>), the general-purpose router issue 16 compares auditsync with,
//! run on the same input, moto and machine, in the same run, when
//! `AUDITSYNC_BENCH_VECTOR` names its binary. Issue 16 states its aims as ratios to
//! `gzip -6`, taken on a machine whose `gzip -6` was about three times slower than this
//! one's; Vector timed in the same run checks that translation.
//!
//! Vector writes gzip NDJSON into S3, with its log namespace on so that it adds no fields of
//! its own, reading each line either as it came ([`Reading::Lines`], as issue 16's table
//! measured it) or parsed as JSON ([`Reading::Json`]: auditsync too parses, checks and
//! renders every event). Nothing of Vector's is durable: it holds events in memory until S3
//! has them.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{measure, peak_rss_mib};

/// How Vector reads each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As bytes, written back as they came (`bytes` in, `text` out).
    Lines,
    /// Parsed as JSON and written back as JSON.
    Json,
}

impl Reading {
    /// The source's decoding codec and the sink's encoding codec.
    fn codecs(self) -> (&'static str, &'static str) {
        match self {
            Reading::Lines => ("bytes", "text"),
            Reading::Json => ("json", "json"),
        }
    }
}

/// A Vector binary and the moto endpoint it writes to.
pub struct Vector {
    bin: PathBuf,
    endpoint: String,
}

/// What one Vector run measured.
pub struct VectorRun {
    /// Seconds until every event was acknowledged (HTTP; for stdin, `end_to_end`).
    pub acknowledged: f64,
    /// Seconds until Vector had put every event into S3 and exited.
    pub end_to_end: f64,
    /// Peak RSS, MiB.
    pub rss_mib: f64,
}

impl Vector {
    /// The Vector that `AUDITSYNC_BENCH_VECTOR` names, if it does.
    pub fn from_env(endpoint: &str) -> Option<Self> {
        let bin = PathBuf::from(std::env::var_os("AUDITSYNC_BENCH_VECTOR")?);
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("AUDITSYNC_BENCH_VECTOR={}: {e}", bin.display()));
        println!(
            "comparing with {}",
            String::from_utf8_lossy(&version.stdout).trim()
        );
        Some(Self {
            bin,
            endpoint: endpoint.to_string(),
        })
    }

    /// The sink half of every config: gzip NDJSON into `bucket`, batches cut after
    /// `timeout_secs` (or Vector's default size), end-to-end acknowledgements as asked.
    fn s3_sink(
        &self,
        bucket: &str,
        reading: Reading,
        timeout_secs: f64,
        acknowledgements: bool,
    ) -> String {
        format!(
            r#"
[sinks.s3]
type = "aws_s3"
inputs = ["input"]
bucket = "{bucket}"
key_prefix = "vector/"
region = "us-east-1"
endpoint = "{endpoint}"
force_path_style = true
auth.access_key_id = "test"
auth.secret_access_key = "test"
compression = "gzip"
encoding.codec = "{encoding}"
framing.method = "newline_delimited"
batch.timeout_secs = {timeout_secs}
healthcheck.enabled = false
acknowledgements.enabled = {acknowledgements}
"#,
            endpoint = self.endpoint,
            encoding = reading.codecs().1,
        )
    }

    fn command(&self, dir: &Path, config: &str) -> Command {
        let data = dir.join("vector-data");
        std::fs::create_dir_all(&data).unwrap();
        let path = dir.join("vector.toml");
        let whole = format!(
            "data_dir = \"{}\"\nschema.log_namespace = true\n{config}",
            data.display()
        );
        std::fs::write(&path, whole).unwrap();
        let mut cmd = Command::new(&self.bin);
        // `-qq`: errors only, so that the piped stderr never fills.
        cmd.arg("-qq").arg("--config").arg(&path);
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// `vector < input` into `bucket`: it exits once the input has ended and every batch is
    /// in S3.
    pub fn stdin_to_s3(
        &self,
        dir: &Path,
        bucket: &str,
        reading: Reading,
        input: &Path,
    ) -> VectorRun {
        let config = format!(
            "[sources.input]\ntype = \"stdin\"\ndecoding.codec = \"{}\"\n{}",
            reading.codecs().0,
            self.s3_sink(bucket, reading, 1.0, false)
        );
        let mut cmd = self.command(dir, &config);
        cmd.stdin(std::fs::File::open(input).unwrap());
        let (took, rss_mib) = measure(cmd);
        VectorRun {
            acknowledged: took.as_secs_f64(),
            end_to_end: took.as_secs_f64(),
            rss_mib,
        }
    }

    /// Vector's HTTP server into `bucket` under `load` (given its address, it returns the
    /// seconds its posts took). Batches are cut every 0.1 s: with acknowledgements on, an
    /// answer waits for its batch to be in S3, so a longer timeout would bound the rate by
    /// the clients' count instead of by Vector. With them off, the end to end time is until
    /// Vector, stopped after the load, has flushed its batches and exited.
    pub fn http_to_s3(
        &self,
        dir: &Path,
        bucket: &str,
        reading: Reading,
        acknowledgements: bool,
        load: impl FnOnce(SocketAddr) -> f64,
    ) -> VectorRun {
        let addr = free_loopback_port();
        let config = format!(
            "[sources.input]\ntype = \"http_server\"\naddress = \"{addr}\"\npath = \"\"\nstrict_path = false\ndecoding.codec = \"{}\"\nframing.method = \"newline_delimited\"\n{}",
            reading.codecs().0,
            self.s3_sink(bucket, reading, 0.1, acknowledgements)
        );
        let mut child = self
            .command(dir, &config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("vector.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(addr, &mut child);
        let started = Instant::now();
        let acknowledged = load(addr);
        let rss_mib = peak_rss_mib(child.id()).unwrap_or(0.0);
        let exit = super::support::terminate(&mut child);
        let end_to_end = started.elapsed().as_secs_f64();
        assert!(
            exit.success(),
            "Vector failed: {exit}; see {}",
            dir.join("vector.log").display()
        );
        VectorRun {
            acknowledged,
            end_to_end,
            rss_mib,
        }
    }

    /// The NDJSON lines Vector put into `bucket`, read back from moto (signed, with
    /// auditsync's S3 sink: moto refuses an anonymous read of them): every pipeline must
    /// deliver every event for its rate to count.
    pub fn events_in(&self, bucket: &str) -> u64 {
        use auditsync_core::Sink;
        let options = serde_json::json!({"bucket": bucket, "region": "us-east-1",
            "endpoint": self.endpoint, "force_path_style": true,
            "access_key_id": "test", "secret_access_key": "test"});
        let sink = auditsync_s3::S3Sink::new(serde_json::from_value(options).unwrap()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut lines = 0u64;
            for object in sink.list("vector/").await.unwrap() {
                let body = sink.get(&object.key).await.unwrap();
                let mut text = Vec::new();
                flate2::read::MultiGzDecoder::new(&body[..])
                    .read_to_end(&mut text)
                    .unwrap();
                lines += text.iter().filter(|&&b| b == b'\n').count() as u64;
            }
            lines
        })
    }
}

/// A loopback port nothing listens on now (a bench, so the short race is harmless).
fn free_loopback_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until Vector accepts connections on `addr`, for at most 60 s.
fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("Vector exited before it listened: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Vector did not listen on {addr} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
