//! The registry of job kinds: every background job g2p runs, bound to its handler, and the
//! schedules every instance declares. `g2p serve`, `g2p worker`, the demo and the tests build
//! their runner here.

use g2p_store::Store;
use g2p_store::id_checks::{REVALIDATE_IDS_JOB, revalidate_ids_job};
use g2p_store::jobs::runner::JobRunner;
use g2p_store::jobs::schedules::ScheduleSpec;
use g2p_store::mts::{MTS_RUN_JOB, MTS_TICK_JOB, MTS_WATCHDOG_JOB};

use crate::mts::runs::MtsJobs;

/// The runner `worker_id` runs, with every job kind of the application.
pub fn runner(store: Store, worker_id: String, mts: MtsJobs) -> JobRunner {
    let (tick, watchdog) = (mts.clone(), mts.clone());
    JobRunner::new(store, worker_id)
        .handler(REVALIDATE_IDS_JOB, revalidate_ids_job)
        .handler(MTS_RUN_JOB, move |ctx, p| mts.clone().run_job(ctx, p))
        .handler(MTS_TICK_JOB, move |ctx, p| tick.clone().tick_job(ctx, p))
        .handler(MTS_WATCHDOG_JOB, move |ctx, p| {
            watchdog.clone().watchdog_job(ctx, p)
        })
}

/// Schedules every instance declares at start (idempotent).
pub async fn declare_schedules(store: &Store) -> Result<(), g2p_store::StoreError> {
    store
        .upsert_schedule(
            "mts-watchdog",
            MTS_WATCHDOG_JOB,
            serde_json::json!({}),
            ScheduleSpec::EveryMinutes(1),
        )
        .await?;
    Ok(())
}
