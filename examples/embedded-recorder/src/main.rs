//! A small axum service that records an audit event for every user action, durably, before
//! it answers: the embedded alternative to posting events to `auditsync run`.
//!
//! ```sh
//! cargo run -p embedded-recorder -- 127.0.0.1:3000 ./data/app-audit.db
//! curl -XPOST -H 'x-user-email: ada@example.com' localhost:3000/projects/apollo
//! ```
//!
//! Export the store with `auditsync export --once` and a config whose `store.path` is the
//! same file.

use std::sync::Arc;

use auditsync_core::{Actor, Entity, Event};
use auditsync_engine::recorder::Recorder;
use auditsync_store::SqliteStore;
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let db = args.next().unwrap_or_else(|| "./data/app-audit.db".into());
    let store = Arc::new(SqliteStore::open(&db)?);
    let recorder = Recorder::start(store);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(recorder)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_store::Store;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
