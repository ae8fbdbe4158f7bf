//! Versioned migrations, run when a store first connects. Replicas that start together take
//! turns on an advisory lock; each migration runs once, in its own transaction, recorded in
//! `auditsync_migrations`.

use tokio_postgres::Client;

/// The migrations, in order; a migration is never edited once released, only added to.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the outbox",
        r#"
CREATE TABLE events (
    seq     BIGINT PRIMARY KEY,
    id      TEXT   NOT NULL UNIQUE,
    time_ms BIGINT NOT NULL,
    tenant  TEXT,
    body    TEXT   NOT NULL
);
-- The single sequencer: every writer of events locks this row for its transaction, so
-- sequence numbers are handed out and committed in the same order and a reader never sees
-- seq n+1 before seq n.
CREATE TABLE sequencer (
    one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    last_seq BIGINT  NOT NULL
);
INSERT INTO sequencer (one, last_seq) VALUES (TRUE, 0);
CREATE TABLE cursors (
    destination TEXT   PRIMARY KEY,
    seq         BIGINT NOT NULL
);
CREATE TABLE batches (
    destination  TEXT   NOT NULL,
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    object_key   TEXT   NOT NULL,
    events       BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    sha256       TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    earliest_ms  BIGINT,
    latest_ms    BIGINT,
    completed_ms BIGINT,
    PRIMARY KEY (destination, first_seq)
);
CREATE TABLE manifests (
    destination TEXT   NOT NULL,
    number      BIGINT NOT NULL,
    object_key  TEXT   NOT NULL,
    sha256      TEXT   NOT NULL,
    last_seq    BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (destination, number)
);
CREATE TABLE schedule_runs (
    schedule    TEXT    PRIMARY KEY,
    started_ms  BIGINT  NOT NULL,
    finished_ms BIGINT  NOT NULL,
    ok          BOOLEAN NOT NULL
);
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE gc_ids (
    hash       BYTEA  PRIMARY KEY,
    seq        BIGINT NOT NULL,
    deleted_ms BIGINT NOT NULL
);
CREATE INDEX gc_ids_by_age ON gc_ids (deleted_ms, seq);
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    (
        2,
        "events by tenant",
        // A tenant's destination reads only its tenant's events, in sequence order.
        "CREATE INDEX events_by_tenant ON events (tenant, seq);",
    ),
    (
        3,
        "destination failures",
        // Shared by the replicas: every one shows a failing destination and waits out its
        // pause, whichever ran it last.
        r#"
CREATE TABLE destination_failures (
    destination     TEXT   PRIMARY KEY,
    since_ms        BIGINT NOT NULL,
    last_error      TEXT   NOT NULL,
    failures        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL
);
"#,
    ),
];

/// An advisory lock key of auditsync's migrations ("audit" in ASCII).
const MIGRATION_LOCK: i64 = 0x61_75_64_69_74;

/// Creates the schema if needed and applies the migrations not yet applied.
pub async fn run(client: &mut Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.auditsync_migrations (
             version    INT    PRIMARY KEY,
             name       TEXT   NOT NULL,
             applied_ms BIGINT NOT NULL
         );"
    ))
    .await?;
    tx.commit().await?;
    for (version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let done = tx
            .query_opt(
                &format!("SELECT 1 FROM {schema}.auditsync_migrations WHERE version = $1"),
                &[version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(&format!("SET LOCAL search_path TO {schema}; {sql}"))
            .await?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.auditsync_migrations (version, name, applied_ms)
                 VALUES ($1, $2, (extract(epoch from now()) * 1000)::bigint)"
            ),
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, schema, "applied PostgreSQL migration");
    }
    Ok(())
}
