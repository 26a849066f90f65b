//! Background jobs: listing with progress, retry and cancel (admin), schedules, and starting the
//! registry's own jobs.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use g2p_store::id_checks::REVALIDATE_IDS_JOB;
use g2p_store::jobs::schedules::Schedule;
use g2p_store::jobs::{Job, JobCounts, JobQuery, JobStatus, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct JobListQuery {
    /// queued, running, succeeded, dead or cancelled.
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Keyset cursor (newest first): the last id of the previous page.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobPage {
    pub items: Vec<Job>,
    pub next_after: Option<i64>,
    pub counts: JobCounts,
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", operation_id = "list_jobs",
    params(JobListQuery),
    responses((status = 200, body = JobPage), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    c: Caller,
    Query(q): Query<JobListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    c.require_read()?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(v) => Some(v.parse::<JobStatus>().map_err(|_| {
            ApiError::field(
                "status",
                "must be queued, running, succeeded, dead or cancelled",
            )
        })?),
    };
    let limit = crate::api::page_limit(q.limit)?;
    let items = s
        .store
        .list_jobs(&JobQuery {
            status,
            kind: q.kind.filter(|k| !k.is_empty()),
            after_id: q.after,
            limit: u32::try_from(limit).unwrap_or(50),
        })
        .await?;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|j| j.id))
        .flatten();
    let counts = s.store.count_by_status().await?;
    Ok(Json(JobPage {
        items,
        next_after,
        counts,
    }))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", operation_id = "get_job",
    params(("id" = i64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Job>, ApiError> {
    c.require_read()?;
    Ok(Json(s.store.get_job(id).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", operation_id = "retry_job",
    params(("id" = i64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Job>, ApiError> {
    c.require_admin()?;
    let job = s.store.retry_job(id).await?;
    s.store
        .audit_event(&c.actor(), "retry", "job", Some(id), None)
        .await?;
    Ok(Json(job))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", operation_id = "cancel_job",
    params(("id" = i64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Job>, ApiError> {
    c.require_admin()?;
    let job = s.store.cancel_job(id).await?;
    s.store
        .audit_event(&c.actor(), "cancel", "job", Some(id), None)
        .await?;
    Ok(Json(job))
}

#[utoipa::path(get, path = "/api/v1/schedules", tag = "jobs", operation_id = "list_schedules",
    responses((status = 200, body = [Schedule])))]
pub async fn schedules(
    State(s): State<AppState>,
    c: Caller,
) -> Result<Json<Vec<Schedule>>, ApiError> {
    c.require_read()?;
    Ok(Json(s.store.list_schedules().await?))
}

#[utoipa::path(post, path = "/api/v1/id-types/{id}/revalidate", tag = "id types",
    operation_id = "revalidate_id_type", params(("id" = i64, Path)),
    responses((status = 202, body = Job), (status = 404, body = ErrorBody)))]
/// Starts a job that re-checks every stored ID of this type against its current regex and marks
/// the ones that no longer match as invalid. Progress is readable at `/api/v1/jobs/{id}`.
pub async fn revalidate(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    c.require_admin()?;
    s.store.get_id_type(id).await?;
    let job = s
        .store
        .enqueue(NewJob::new(REVALIDATE_IDS_JOB, json!({ "id_type_id": id })).max_attempts(3))
        .await?;
    s.store
        .audit_event(
            &c.actor(),
            "revalidate",
            "id_type",
            Some(id),
            Some(json!({"job": job.id})),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}
