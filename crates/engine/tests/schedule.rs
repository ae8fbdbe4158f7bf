//! Schedules of several processes sharing one store fire once per instant, on whichever
//! claims the firing first (issue 14, point 5). Two schedulers in one test stand for two
//! replicas: each names itself as a different holder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auditsync_engine::cron::Schedule;
use auditsync_engine::schedule::{ScheduleObserver, Scheduler};
use auditsync_engine::{DestinationReport, Exporter};
use auditsync_store::Store;
use auditsync_store_sqlite::SqliteStore;

struct Count(AtomicU64);

impl ScheduleObserver for Count {
    fn exported(&self, _report: &DestinationReport, _now_ms: i64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_each_firing_of_a_shared_schedule_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
    // One destination: each export run reports it once, with nothing to do.
    let count = Arc::new(Count(AtomicU64::new(0)));
    let sink: Arc<dyn auditsync_core::Sink> =
        Arc::new(auditsync_pv::PvSink::new(auditsync_pv::PvConfig {
            root: dir.path().join("out"),
            stale_temp_secs: 600,
        }));
    let destination = || auditsync_engine::Destination {
        tenant: None,
        pause: None,
        name: "d".into(),
        sink: sink.clone(),
        format: auditsync_engine::FileFormat {
            schema: auditsync_core::registry::build_schema("uevents").unwrap(),
            formatter: auditsync_core::registry::build_formatter("ndjson", &Default::default())
                .unwrap(),
            compression: auditsync_engine::Compression::None,
        },
        limits: auditsync_engine::BatchLimits::default(),
    };
    auditsync_catalog::link();
    auditsync_ndjson::link();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let exporter = Arc::new(Exporter::new(
                store.clone(),
                "acme".into(),
                vec![destination()],
            ));
            Scheduler::new(exporter, store.clone())
                .export_on(Schedule::parse("* * * * * *").unwrap())
                .observed_by(count.clone())
                .start()
        })
        .collect();
    // Start on a second boundary plus a little, then watch four firings.
    let now = chrono::Utc::now();
    let to_boundary = 1_000 - now.timestamp_subsec_millis() as u64;
    tokio::time::sleep(Duration::from_millis(to_boundary + 4_300)).await;
    for running in replicas {
        running.shutdown().await;
    }
    let runs = count.0.load(Ordering::Relaxed);
    // 4 or 5 firings in that time, each run by one replica; without claims both run each
    // (8 to 10). A replica that wakes more than half a second late may run a firing again,
    // hence the slack on a loaded machine.
    assert!((3..=6).contains(&runs), "{runs} export runs");
}
