//! Background jobs: a table that htmx refreshes every 2 s, with progress bars, and Retry/Cancel
//! buttons for admins. Payloads and results may hold personal data and are never shown.

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_htmx::{HxHistoryRestoreRequest, HxRequest};
use g2p_store::jobs::{Job, JobQuery, JobStatus};
use serde::Deserialize;

use super::{ConsoleError, ConsoleUser, Layout, format_time, render};
use crate::error::ApiError;
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize)]
pub struct ListQuery {
    /// Keyset cursor: jobs older than this id.
    after: Option<i64>,
}

pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub status: &'static str,
    pub attempts: String,
    /// Whether the handler reported progress; then `progress_value` of `progress_max`.
    pub has_progress: bool,
    pub progress_value: i64,
    pub progress_max: i64,
    pub progress_text: String,
    pub last_error: String,
    pub updated: String,
    pub can_retry: bool,
    pub can_cancel: bool,
}

fn job_row(j: Job) -> JobRow {
    let progress = match (j.progress_done, j.progress_total) {
        (Some(done), Some(total)) if total > 0 => Some((done.clamp(0, total), total)),
        _ => None,
    };
    let progress_text = match progress {
        Some((done, total)) => format!("{done} of {total} ({}%)", done * 100 / total),
        None if j.status == JobStatus::Succeeded => "done".to_owned(),
        None if j.status == JobStatus::Running => "running".to_owned(),
        None => "not started".to_owned(),
    };
    JobRow {
        id: j.id,
        kind: j.kind,
        status: j.status.as_str(),
        attempts: format!("{} of {}", j.attempts, j.max_attempts),
        has_progress: progress.is_some(),
        progress_value: progress.map_or(0, |p| p.0),
        progress_max: progress.map_or(0, |p| p.1),
        progress_text,
        last_error: j.last_error.unwrap_or_default(),
        updated: format_time(&j.updated_at),
        can_retry: matches!(j.status, JobStatus::Dead | JobStatus::Cancelled),
        can_cancel: j.status == JobStatus::Queued,
    }
}

/// The polled part of the page.
pub struct JobTable {
    pub rows: Vec<JobRow>,
    /// `?after=…` of this view, so that polling refreshes the same page.
    pub poll_url: String,
    pub next_after: Option<i64>,
    pub is_first_page: bool,
    pub is_admin: bool,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    layout: Layout,
    table: JobTable,
}

#[derive(Template)]
#[template(path = "jobs_fragment.html")]
struct JobsFragment {
    table: JobTable,
}

pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    HxRequest(htmx): HxRequest,
    HxHistoryRestoreRequest(restore): HxHistoryRestoreRequest,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest {
        code: "bad_query",
        message: e.body_text(),
    })?;
    let jobs = state
        .store
        .list_jobs(&JobQuery {
            after_id: q.after,
            limit: PAGE_SIZE,
            ..JobQuery::default()
        })
        .await?;
    let next_after = if jobs.len() == PAGE_SIZE as usize {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    let table = JobTable {
        rows: jobs.into_iter().map(job_row).collect(),
        poll_url: match q.after {
            Some(a) => format!("/jobs?after={a}"),
            None => "/jobs".to_owned(),
        },
        next_after,
        is_first_page: q.after.is_none(),
        is_admin: user.role.is_admin(),
        csrf: user.csrf.clone(),
    };
    Ok(if htmx && !restore {
        render(StatusCode::OK, &JobsFragment { table })
    } else {
        render(
            StatusCode::OK,
            &JobsPage {
                layout: Layout::new(&user, "jobs"),
                table,
            },
        )
    })
}

fn job_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ConsoleError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::NotFound("job".into()).into())
}

/// Puts a dead or cancelled job back in the queue (admins).
pub async fn retry(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = job_id(id)?;
    state.store.retry_job(id).await?;
    state
        .store
        .audit_event(&user.actor(), "retry", "job", Some(id), None)
        .await?;
    Ok(Redirect::to("/jobs").into_response())
}

/// Cancels a queued job (admins).
pub async fn cancel(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = job_id(id)?;
    state.store.cancel_job(id).await?;
    state
        .store
        .audit_event(&user.actor(), "cancel", "job", Some(id), None)
        .await?;
    Ok(Redirect::to("/jobs").into_response())
}
