//! Asynchronous range exports (`/v1/exports`): jobs persisted as JSON files beside their
//! output, so that a restart finds them again and finishes what was queued or running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use auditsync_engine::range::RangeProgress;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::range_export::{RangeArgs, RangePlan};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for the one export slot.
    Queued,
    /// Running.
    Running,
    /// The file is ready.
    Done,
    /// It failed; `error` says why.
    Failed,
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// Events in the file.
    pub events: u64,
    /// Taken from the store.
    pub from_store: u64,
    /// Taken from the archive.
    pub from_archive: u64,
    /// Found in both, written once.
    pub duplicates: u64,
    /// Size of the file.
    pub bytes: u64,
}

/// One export job, as kept in `<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Its id (a UUIDv7).
    pub id: String,
    /// Where it is.
    pub status: JobStatus,
    /// What it exports.
    pub params: RangeArgs,
    /// The admin token's name that asked for it.
    pub requested_by: String,
    /// When it was asked for, epoch ms.
    pub created_ms: i64,
    /// When it last finished, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    /// The output's extension, e.g. `csv.gz`.
    pub extension: String,
    /// Counts, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The jobs of one service.
pub struct Jobs {
    dir: PathBuf,
    jobs: Mutex<HashMap<String, Job>>,
    progress: Mutex<HashMap<String, Arc<RangeProgress>>>,
    /// One export at a time: they read the whole store and may read a whole archive.
    slot: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Jobs {
    /// Opens the job directory; jobs that were queued or running when the service stopped
    /// are queued again (their output is rebuilt from scratch). Returns them to start.
    pub fn open(dir: PathBuf) -> anyhow::Result<(Self, Vec<String>)> {
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "config key `admin.exports_dir`: cannot create {}",
                dir.display()
            )
        })?;
        let mut jobs = HashMap::new();
        let mut resume = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.ends_with(".partial") || name.ends_with(".json.tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !(name.starts_with("job-") && name.ends_with(".json")) {
                continue;
            }
            // A damaged job file must not keep the service (and its ingest) from starting: it
            // is set aside, named in the log, and the job is no longer offered.
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str::<Job>(&text).map_err(|e| e.to_string()));
            let mut job = match parsed {
                Ok(job) => job,
                Err(e) => {
                    let aside = path.with_extension("json.damaged");
                    tracing::error!(file = %path.display(), error = %e, aside = %aside.display(), "export job file is damaged; set aside");
                    let _ = std::fs::rename(&path, &aside);
                    continue;
                }
            };
            if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
                job.status = JobStatus::Queued;
                resume.push(job.id.clone());
            }
            jobs.insert(job.id.clone(), job);
        }
        resume.sort();
        let this = Self {
            dir,
            jobs: Mutex::new(jobs),
            progress: Mutex::new(HashMap::new()),
            slot: tokio::sync::Semaphore::new(1),
        };
        for id in &resume {
            this.save(id)?;
        }
        Ok((this, resume))
    }

    fn save(&self, id: &str) -> anyhow::Result<()> {
        let job = lock(&self.jobs).get(id).cloned().context("no such job")?;
        write_atomic(
            &self.dir.join(format!("job-{id}.json")),
            &serde_json::to_vec_pretty(&job)?,
        )
        .with_context(|| format!("cannot save export job {id}"))
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) -> anyhow::Result<()> {
        if let Some(job) = lock(&self.jobs).get_mut(id) {
            change(job);
        }
        self.save(id)
    }

    /// The output file of a job.
    pub fn file(&self, job: &Job) -> PathBuf {
        self.dir.join(format!("{}.{}", job.id, job.extension))
    }

    /// Checks the parameters and records a queued job (durably) before it is started.
    pub fn create(&self, app: &App, params: RangeArgs, requested_by: &str) -> anyhow::Result<Job> {
        let plan = RangePlan::new(app, &params)?;
        let job = Job {
            id: uuid::Uuid::now_v7().to_string(),
            status: JobStatus::Queued,
            params,
            requested_by: requested_by.to_string(),
            created_ms: now_ms(),
            finished_ms: None,
            extension: plan.extension,
            result: None,
            error: None,
        };
        lock(&self.jobs).insert(job.id.clone(), job.clone());
        self.save(&job.id)?;
        Ok(job)
    }

    /// Deletes finished jobs (their record and file) that finished more than `keep` ago;
    /// returns how many.
    pub fn prune(&self, keep: std::time::Duration) -> usize {
        let cutoff = now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let old: Vec<Job> = lock(&self.jobs)
            .values()
            .filter(|j| matches!(j.status, JobStatus::Done | JobStatus::Failed))
            .filter(|j| j.finished_ms.unwrap_or(j.created_ms) < cutoff)
            .cloned()
            .collect();
        for job in &old {
            let _ = std::fs::remove_file(self.file(job));
            let _ = std::fs::remove_file(self.dir.join(format!("job-{}.json", job.id)));
            lock(&self.jobs).remove(&job.id);
            tracing::info!(job = %job.id, "export job expired: record and file deleted");
        }
        old.len()
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = lock(&self.jobs).values().cloned().collect();
        jobs.sort_by(|a, b| b.id.cmp(&a.id));
        jobs
    }

    /// The live progress of a running job.
    pub fn progress(&self, id: &str) -> Option<Arc<RangeProgress>> {
        lock(&self.progress).get(id).cloned()
    }

    /// A job and its live progress.
    pub fn get(&self, id: &str) -> Option<(Job, Option<Arc<RangeProgress>>)> {
        let job = lock(&self.jobs).get(id).cloned()?;
        Some((job, self.progress(id)))
    }

    /// Runs a queued job to the end (waiting for the export slot first).
    pub async fn run(self: Arc<Self>, app: Arc<App>, id: String) {
        let Ok(_permit) = self.slot.acquire().await else {
            return;
        };
        let Some((job, _)) = self.get(&id) else {
            return;
        };
        let progress = Arc::new(RangeProgress::default());
        lock(&self.progress).insert(id.clone(), progress.clone());
        if let Err(e) = self.update(&id, |j| j.status = JobStatus::Running) {
            tracing::error!(job = %id, error = %format!("{e:#}"), "export job not started");
            return;
        }
        tracing::info!(job = %id, requested_by = %job.requested_by, "export job started");
        let outcome = self.execute(&app, &job, progress).await;
        let saved = self.update(&id, |j| {
            j.finished_ms = Some(now_ms());
            match &outcome {
                Ok(result) => {
                    j.status = JobStatus::Done;
                    j.result = Some(result.clone());
                }
                Err(e) => {
                    j.status = JobStatus::Failed;
                    j.error = Some(format!("{e:#}"));
                }
            }
        });
        lock(&self.progress).remove(&id);
        match (outcome, saved) {
            (Ok(r), Ok(())) => tracing::info!(job = %id, events = r.events, "export job done"),
            (Err(e), _) => {
                tracing::warn!(job = %id, error = %format!("{e:#}"), "export job failed")
            }
            (_, Err(e)) => {
                tracing::error!(job = %id, error = %format!("{e:#}"), "export job state not saved")
            }
        }
    }

    async fn execute(
        &self,
        app: &App,
        job: &Job,
        progress: Arc<RangeProgress>,
    ) -> anyhow::Result<JobResult> {
        let plan = RangePlan::new(app, &job.params)?;
        let target = self.file(job);
        let partial = self
            .dir
            .join(format!("{}.{}.partial", job.id, job.extension));
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let result = plan.run(app, file, progress).await;
        let (report, file) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        std::fs::rename(&partial, &target)?;
        Ok(JobResult {
            events: report.events,
            from_store: report.from_store,
            from_archive: report.from_archive,
            duplicates: report.duplicates,
            bytes,
        })
    }
}
