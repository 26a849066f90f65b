//! Operator actions on an MTS connector, each one transaction with one audit entry, on every
//! backend: start (run + job + schedule + state), a second start while a run is going (nothing
//! written), run now, retry failures, stop (schedule gone, runs stopped, state).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use g2p_domain::mts_connector::MtsConnectorSettings;
use g2p_store::Store;
use g2p_store::audit::Actor;
use g2p_store::jobs::schedules::ScheduleSpec;
use g2p_store::mts::{ConnectorState, RunKind, RunStatus, mts_schedule_name};
use g2p_store::mts_lifecycle::{NewMtsRun, RunQueued, StartMode};

/// The audit actions written about connector `id`, oldest first.
async fn audit_actions(store: &Store, id: i64) -> Vec<String> {
    const SQL: &str = "SELECT action FROM audit_log WHERE entity = 'mts_connector' \
        AND entity_id = $1 ORDER BY id";
    let rows: Vec<(String,)> = match store.pools_ref() {
        g2p_store::db::PoolsRef::Postgres(p) => {
            sqlx::query_as(SQL).bind(id).fetch_all(p).await.unwrap()
        }
        g2p_store::db::PoolsRef::Sqlite { read, .. } => {
            sqlx::query_as(SQL).bind(id).fetch_all(read).await.unwrap()
        }
    };
    rows.into_iter().map(|(a,)| a).collect()
}

/// Jobs of kind `mts.run`, with their dedupe keys.
async fn run_jobs(store: &Store) -> Vec<String> {
    const SQL: &str = "SELECT dedupe_key FROM jobs WHERE kind = 'mts.run' ORDER BY id";
    let rows: Vec<(Option<String>,)> = match store.pools_ref() {
        g2p_store::db::PoolsRef::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
        g2p_store::db::PoolsRef::Sqlite { read, .. } => {
            sqlx::query_as(SQL).fetch_all(read).await.unwrap()
        }
    };
    rows.into_iter().map(|(k,)| k.unwrap_or_default()).collect()
}

#[tokio::test]
async fn connector_actions_are_one_transaction_and_one_audit_entry_each() {
    for store in g2p_testkit::backends().await {
        let actor = Actor::system("test");
        let id = store
            .create_mts_connector(
                "c",
                &MtsConnectorSettings::default(),
                |_| None,
                None,
                None,
                &actor,
            )
            .await
            .unwrap()
            .id;
        assert_eq!(audit_actions(&store, id).await, ["create"]);

        // Start: the first run, its job, the schedule (enabled) and the state, audited once.
        let spec = ScheduleSpec::EveryMinutes(30);
        let RunQueued::Created(first) = store
            .start_mts_connector(id, StartMode::Recurring(spec), &actor)
            .await
            .unwrap()
        else {
            panic!("no run was queued");
        };
        assert_eq!(first.status, RunStatus::Queued);
        assert_eq!(run_jobs(&store).await, [format!("mts.run:{}", first.id)]);
        let schedule = store.get_schedule(&mts_schedule_name(id)).await.unwrap();
        assert!(schedule.enabled);
        assert_eq!(
            store.get_mts_connector(id).await.unwrap().state,
            ConnectorState::Running
        );
        assert_eq!(audit_actions(&store, id).await, ["create", "start"]);

        // While that run is going, neither a start nor a run nor a retry writes anything.
        let again = store
            .start_mts_connector(id, StartMode::Recurring(spec), &actor)
            .await
            .unwrap();
        assert!(
            matches!(again, RunQueued::AlreadyActive(r) if r == first.id),
            "{again:?}"
        );
        let new = NewMtsRun {
            connector_id: id,
            kind: RunKind::Manual,
            selection: None,
            targets: Some(&[1, 2]),
            created_by: "test",
        };
        assert!(matches!(
            store.queue_mts_run(&new, &actor).await.unwrap(),
            RunQueued::AlreadyActive(_)
        ));
        assert!(matches!(
            store.retry_mts_failures(id, &actor).await.unwrap(),
            RunQueued::AlreadyActive(_)
        ));
        assert_eq!(run_jobs(&store).await.len(), 1);
        assert_eq!(audit_actions(&store, id).await, ["create", "start"]);

        // Stop: the schedule goes, the run stops, the state follows; one entry.
        let row = store.stop_mts_connector(id, &actor).await.unwrap();
        assert_eq!(row.state, ConnectorState::Stopped);
        assert!(store.get_schedule(&mts_schedule_name(id)).await.is_err());
        let stopped = store.get_mts_run(first.id).await.unwrap();
        assert_eq!(stopped.status, RunStatus::Stopped);
        assert_eq!(audit_actions(&store, id).await, ["create", "start", "stop"]);

        // Run now and retry failures, each with its own job and entry.
        let RunQueued::Created(manual) = store.queue_mts_run(&new, &actor).await.unwrap() else {
            panic!("no manual run");
        };
        store
            .set_mts_run_status(manual.id, RunStatus::Completed, None)
            .await
            .unwrap();
        let RunQueued::Created(retry) = store.retry_mts_failures(id, &actor).await.unwrap() else {
            panic!("no retry run");
        };
        assert_eq!(retry.kind, RunKind::Retry);
        assert_eq!(run_jobs(&store).await.len(), 3);
        assert_eq!(
            audit_actions(&store, id).await,
            ["create", "start", "stop", "run", "retry_failed"]
        );

        // An unknown connector: not found, nothing written.
        assert!(store.stop_mts_connector(id + 1000, &actor).await.is_err());
        assert!(
            store
                .start_mts_connector(id + 1000, StartMode::OneTime, &actor)
                .await
                .is_err()
        );
        assert_eq!(run_jobs(&store).await.len(), 3);
    }
}
