//! `auditsync run` reloads the tenant files without a restart: on SIGHUP, and when the
//! directory's `*.json` files change (looked at every [`POLL`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::app::App;

/// How often the directory is looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// What the directory's tenant files look like: each one's name, size and modification
/// time. A change in any means a reload.
fn fingerprint(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().ok(),
            ))
        })
        .collect();
    files.sort();
    files
}

/// Reloads now, logging what came of it.
pub async fn reload(app: &Arc<App>, why: &str) {
    let app = Arc::clone(app);
    match tokio::task::spawn_blocking(move || app.reload_tenants()).await {
        Ok(Ok((tenants, destinations))) => {
            tracing::info!(why, tenants, destinations, "tenant files reloaded")
        }
        Ok(Err(e)) => {
            tracing::error!(why, error = %format!("{e:#}"), "tenant files not reloaded; the previous ones stay in force")
        }
        Err(e) => tracing::error!(why, error = %e, "tenant reload task failed"),
    }
}

/// Watches until `stop` turns true.
pub async fn watch(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Some(dir) = app.config.tenants_dir.clone() else {
        return;
    };
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: tenant files reload on change only");
            None
        }
    };
    let mut seen = fingerprint(&dir);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                seen = fingerprint(&dir);
                reload(&app, "SIGHUP").await;
            }
            () = tokio::time::sleep(POLL) => {
                let now = fingerprint(&dir);
                if now != seen {
                    seen = now;
                    reload(&app, "tenant files changed").await;
                }
            }
        }
    }
}
