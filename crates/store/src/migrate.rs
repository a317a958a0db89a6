//! Schema migrations, embedded in the binary and applied at start. Each database has its own
//! scripts (they differ in little more than auto-increment syntax); versions match.

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::StoreError;

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_nodes_logs_agents.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_replicas_wanted.sql"),
    ),
    (4, include_str!("../migrations/sqlite/0004_failures.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_scoped_cursors.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_work_done.sql")),
    (7, include_str!("../migrations/sqlite/0007_deployment.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_job_clusters.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_ran_on.sql")),
    (10, include_str!("../migrations/sqlite/0010_boot_id.sql")),
    (
        11,
        include_str!("../migrations/sqlite/0011_leader_fleet.sql"),
    ),
    (12, include_str!("../migrations/sqlite/0012_node_drain.sql")),
    (
        13,
        include_str!("../migrations/sqlite/0013_ran_on_placement.sql"),
    ),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_nodes_logs_agents.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_replicas_wanted.sql"),
    ),
    (4, include_str!("../migrations/postgres/0004_failures.sql")),
    (
        5,
        include_str!("../migrations/postgres/0005_scoped_cursors.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_work_done.sql")),
    (
        7,
        include_str!("../migrations/postgres/0007_deployment.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_job_clusters.sql"),
    ),
    (9, include_str!("../migrations/postgres/0009_ran_on.sql")),
    (10, include_str!("../migrations/postgres/0010_boot_id.sql")),
    (
        11,
        include_str!("../migrations/postgres/0011_leader_fleet.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_node_drain.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_ran_on_placement.sql"),
    ),
];

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
    version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn check_version(found: Option<i64>, scripts: &[(i64, &str)]) -> Result<i64, StoreError> {
    let known = scripts.last().map_or(0, |s| s.0);
    let found = found.unwrap_or(0);
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    Ok(found)
}

pub async fn sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // IMMEDIATE: take the write lock first, so that two processes starting together on one
    // file migrate one after the other.
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        sqlx::raw_sql(MIGRATIONS_TABLE).execute(&mut *conn).await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await?;
        let found = check_version(found, SQLITE)?;
        for (version, script) in SQLITE.iter().filter(|s| s.0 > found) {
            sqlx::raw_sql(script).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            tracing::info!(version, "applied SQLite migration");
        }
        Ok::<(), StoreError>(())
    }
    .await;
    match result {
        Ok(()) => {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

pub async fn postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // One migrator at a time across replicas; released at commit.
    sqlx::query("SELECT pg_advisory_xact_lock(7245301115)")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(MIGRATIONS_TABLE).execute(&mut *tx).await?;
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await?;
    let found = check_version(found, POSTGRES)?;
    for (version, script) in POSTGRES.iter().filter(|s| s.0 > found) {
        sqlx::raw_sql(script).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit().await?;
    Ok(())
}
