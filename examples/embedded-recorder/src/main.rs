//! A small axum service that records an audit event for every user action, durably, before
//! it answers: the embedded alternative to posting events to `auditsync run`.
//!
//! ```sh
//! cargo run -p embedded-recorder -- 127.0.0.1:3000 ./data/app-audit.db ./data/app-export
//! curl -XPOST -H 'x-user-email: ada@example.com' localhost:3000/projects/apollo
//! ```
//!
//! The app also runs auditsync's schedules itself ([`schedules`]): every minute it exports
//! the store as NDJSON files into the export directory, and at 01:00 it garbage-collects
//! what was exported. No `auditsync` process is needed.

use std::path::Path as FsPath;
use std::sync::Arc;

use auditsync_core::{registry, Actor, Entity, Event};
use auditsync_engine::cron::Schedule;
use auditsync_engine::recorder::Recorder;
use auditsync_engine::schedule::{RunningSchedules, Scheduler};
use auditsync_engine::{BatchLimits, Compression, Destination, Exporter, FileFormat};
use auditsync_store::Store;
use auditsync_store_sqlite::SqliteStore;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

/// The app's router: `POST /projects/{name}` creates a project and records who did it.
pub fn app(recorder: Recorder) -> Router {
    Router::new()
        .route("/projects/{name}", post(create_project))
        .with_state(recorder)
}

async fn create_project(
    State(recorder): State<Recorder>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let email = headers
        .get("x-user-email")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // ... the application's own work would happen here ...
    let event = Event {
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default(),
        action: "project.created".into(),
        actor: Actor {
            user_email: email,
            ..Actor::default()
        },
        entity: Some(Entity {
            kind: "project".into(),
            id: Some(name.clone()),
        }),
        outcome: auditsync_core::Outcome {
            code: Some(201),
            latency_ms: None,
        },
        ..Event::default()
    };
    // Returns once the event is committed to the store; an action that cannot be audited
    // is reported as failed rather than silently unaudited.
    let recorded = recorder
        .record(event)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({"project": name, "audit_event": recorded.id})))
}

/// Starts auditsync's schedules inside the app: export `store` to `export_dir` (canonical
/// events as NDJSON, under `app/audit/...`) on `export_every`, and GC what was exported at
/// 01:00 every night.
pub fn schedules(
    store: Arc<dyn Store>,
    export_dir: &FsPath,
    export_every: &str,
) -> Result<RunningSchedules, Box<dyn std::error::Error>> {
    auditsync_pv::link();
    auditsync_ndjson::link();
    auditsync_catalog::link();
    let mut options = registry::Options::new();
    options.insert("root".into(), export_dir.display().to_string().into());
    let destination = Destination {
        tenant: None,
        pause: None,
        name: "volume".into(),
        sink: registry::build_sink("pv", &options)?,
        format: FileFormat {
            schema: registry::build_schema("event")?,
            formatter: registry::build_formatter("ndjson", &Default::default())?,
            compression: Compression::None,
        },
        limits: BatchLimits::default(),
    };
    let exporter = Arc::new(Exporter::new(
        store.clone(),
        "app".into(),
        vec![destination],
    ));
    Ok(Scheduler::new(exporter, store)
        .export_on(Schedule::parse(export_every)?)
        .gc_on(Schedule::parse("0 0 1 * * *")?)
        .start())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let db = args.next().unwrap_or_else(|| "./data/app-audit.db".into());
    let export_dir = args.next().unwrap_or_else(|| "./data/app-export".into());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db)?);
    let schedules = schedules(store.clone(), FsPath::new(&export_dir), "@every 1m")?;
    let recorder = Recorder::start(store);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(recorder))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // An export in progress finishes before the app exits.
    schedules.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn post(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("POST {path} HTTP/1.1\r\nHost: x\r\nx-user-email: ada@example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }

    /// Every exported NDJSON line under `dir`.
    fn exported_lines(dir: &FsPath) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "ndjson") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    lines.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
                }
            }
        }
        lines
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recorded_actions_are_exported_on_the_apps_own_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
        let export_dir = dir.path().join("export");
        let running = schedules(store.clone(), &export_dir, "@every 1s").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder::start(store.clone());
        tokio::spawn(async move { axum::serve(listener, app(recorder)).await });

        for name in ["apollo", "gemini"] {
            assert!(post(addr, &format!("/projects/{name}"))
                .await
                .starts_with("HTTP/1.1 200"));
        }
        // Nothing exports the store but the schedule: wait for it (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut lines = exported_lines(&export_dir);
        while lines.len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            lines = exported_lines(&export_dir);
        }
        let mut projects: Vec<&str> = lines
            .iter()
            .map(|l| l["entity"]["id"].as_str().unwrap_or_default())
            .collect();
        projects.sort_unstable();
        assert_eq!(projects, ["apollo", "gemini"], "{lines:?}");
        assert!(lines.iter().all(|l| l["action"] == "project.created"));
        let stored = store.stats().await.unwrap().last_seq;
        assert_eq!(
            store.cursor("volume").await.unwrap(),
            stored,
            "the cursor moved"
        );
        running.shutdown().await;
    }

    #[tokio::test]
    async fn an_action_is_in_the_store_before_the_reply() {
        let dir = std::env::temp_dir().join(format!("embedded-recorder-{}", std::process::id()));
        let store = Arc::new(SqliteStore::open(dir.join("a.db")).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder::start(store.clone());
        tokio::spawn(async move { axum::serve(listener, app(recorder)).await });

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /projects/apollo HTTP/1.1\r\nHost: x\r\nx-user-email: ada@example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

        let stored = store.read_after(0, u64::MAX, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        let event = &stored[0].event;
        assert_eq!(event.action, "project.created");
        assert_eq!(event.actor.user_email.as_deref(), Some("ada@example.com"));
        assert!(
            reply.contains(&event.id),
            "the reply names the stored event's id"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
