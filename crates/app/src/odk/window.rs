//! The `submissionDate` window a run of an ODK connector imports: a manual run's own window; a
//! one-time connector's configured window; or, for a recurring connector, from the watermark
//! (less the overlap; the configured start for the first run, never before it) to now.

use chrono::{DateTime, TimeDelta, Utc};
use g2p_domain::mts_connector::{JobType, MtsConnectorSettings};
use g2p_store::mts::{MtsConnectorRow, MtsRun};
use serde::Deserialize;

/// The window a run imports, and whether it moves the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub advances_watermark: bool,
}

/// How a manual window is kept in a run's selection: `{"window": {"start", "end"}}`.
#[derive(Deserialize)]
struct Requested {
    window: Bounds,
}

#[derive(Deserialize)]
struct Bounds {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// The manual window stored with a run, if any.
pub fn requested(run: &MtsRun) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let sel = run.selection.as_ref()?;
    let r: Requested = serde_json::from_value(sel.0.clone()).ok()?;
    Some((r.window.start, r.window.end))
}

pub fn window(
    run: &MtsRun,
    row: &MtsConnectorRow,
    s: &MtsConnectorSettings,
    now: DateTime<Utc>,
) -> Window {
    if let Some((start, end)) = requested(run) {
        return Window {
            start,
            end,
            advances_watermark: false,
        };
    }
    let configured_start = s.odk_start.unwrap_or(DateTime::UNIX_EPOCH);
    match s.job_type {
        JobType::OneTime => Window {
            start: configured_start,
            end: s.odk_end.unwrap_or(now),
            advances_watermark: false,
        },
        JobType::Recurring => {
            let overlap = TimeDelta::minutes(i64::from(s.odk_overlap_minutes));
            let start = row
                .watermark
                .map_or(configured_start, |w| (w - overlap).max(configured_start));
            Window {
                start,
                end: now,
                advances_watermark: true,
            }
        }
    }
}

/// ODK Central's and MTS's date-time form.
pub fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The OData filter of a window on `__system/submissionDate`, start included, end excluded.
pub fn odata_filter(w: &Window) -> String {
    format!(
        "__system/submissionDate ge {} and __system/submissionDate lt {}",
        iso(w.start),
        iso(w.end)
    )
}
