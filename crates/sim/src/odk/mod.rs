//! ODK Central simulator: sign-in, REST project/form/submission listings and the OData
//! submission feed of ODK Central v2026.2.2, written from `shared/specs/odk-central.md` and the
//! exchanges recorded against a real server (`tests/fixtures/odk-central-v2026.2.2/`).
//!
//! It owns the simulated server state and its HTTP surface. It must not depend on g2p's
//! connector types: a field spelled wrong on either side has to show up in tests.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use g2p_sim::odk::{OdkSim, REGISTRATION_FORM, serve};
//! let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")?.to_utc();
//! let sim = OdkSim::generate(42, 250, start, chrono::TimeDelta::minutes(5));
//! let (addr, _task) = serve(sim.clone(), "127.0.0.1:0".parse()?).await?;
//! // Clients sign in at http://{addr}/v1/sessions as DEFAULT_EMAIL / DEFAULT_PASSWORD.
//! let data = serde_json::json!({"given_name": "Amina", "address": {"village": "Kondele"}});
//! sim.add_submission(1, REGISTRATION_FORM, data, sim.now())?;
//! # let _ = addr; Ok(()) }
//! ```
//!
//! # Failure knobs
//!
//! - [`OdkSim::set_latency`]: every request waits this long before it is handled.
//! - [`OdkSim::fail_next_requests`]: the next N requests (any route, before authentication)
//!   answer `500 {"message":"Internal Server Error"}`.
//! - [`OdkSim::set_sessions_unavailable`]: `POST /v1/sessions` answers 503 with an nginx-style
//!   HTML page (what a Central behind its nginx returns while the backend is down); the other
//!   routes keep working, so existing sessions stay usable.
//! - The clock: [`OdkSim::freeze_clock`], [`OdkSim::advance_clock`] (session expiry, and the
//!   timestamps that HTTP-driven changes record), [`OdkSim::set_session_lifetime`].
//!
//! See `crates/sim/README.md` for the list of simulated routes and every known divergence.

mod filter;
mod generate;
mod http;
mod json;
mod model;
mod odata;
mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tokio::task::JoinHandle;

pub use generate::{DEFAULT_EMAIL, DEFAULT_PASSWORD, REGISTRATION_FORM, registration_form};
pub use model::{Field, FormSpec, ReviewState, SubmissionMeta};

use model::{
    Actor, Form, Inner, Project, SimFile, Submission, lookup, millis, set_path, validate_fields,
};

/// Errors of the simulator's Rust API (the HTTP side answers with Central's problem documents).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid simulator JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid simulator data: {0}")]
    Invalid(String),
    #[error("no project {0}")]
    NoProject(u64),
    #[error("no form {1} in project {0}")]
    NoForm(u64, String),
    #[error("form {0} has no submission {1}")]
    NoSubmission(String, String),
    #[error("form {0} already has a submission {1}")]
    DuplicateInstance(String, String),
    #[error("no user {0}")]
    NoUser(u64),
    #[error("a user with email {0} already exists")]
    DuplicateEmail(String),
}

/// The simulator's state handle: cheap to clone, shared by the router and the test code.
#[derive(Debug, Clone, Default)]
pub struct OdkSim {
    inner: Arc<RwLock<Inner>>,
}

/// The axum router serving the simulated Central under `/v1`.
pub fn router(sim: OdkSim) -> axum::Router {
    http::router(sim)
}

/// Binds `addr` (port 0 for any), serves the simulator on it and returns the bound address.
/// When no domain was set, it becomes `http://{bound address}` (used in `@odata.*` links).
pub async fn serve(sim: OdkSim, addr: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    {
        let mut inner = sim.write();
        if inner.domain.is_none() {
            inner.domain = Some(format!("http://{bound}"));
        }
    }
    let app = router(sim);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "ODK Central simulator stopped");
        }
    });
    Ok((bound, task))
}

impl OdkSim {
    /// An empty simulator: no users, no projects.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still usable.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads users, app users, projects, forms and submissions from a JSON file; see the README
    /// ("Data file") for the shape, and `tests/fixtures/holdout.json` for an example.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, SimError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// As [`Self::from_json_file`], from a string.
    pub fn from_json_str(text: &str) -> Result<Self, SimError> {
        let file: SimFile = serde_json::from_str(text)?;
        let sim = Self::new();
        sim.load(file)?;
        Ok(sim)
    }

    fn load(&self, file: SimFile) -> Result<(), SimError> {
        let mut inner = self.write();
        let now = inner.now();
        inner.domain = file.domain;
        for u in file.users {
            if inner.actor_by_email(&u.email).is_some() {
                return Err(SimError::DuplicateEmail(u.email));
            }
            let admin = match u.role.as_deref() {
                None | Some("admin") => true,
                Some("none") => false,
                Some(other) => {
                    return Err(SimError::Invalid(format!(
                        "user {}: unknown role {other}",
                        u.id
                    )));
                }
            };
            inner.actors.insert(
                u.id,
                Actor {
                    id: u.id,
                    kind: "user",
                    display_name: u.display_name.unwrap_or_else(|| u.email.clone()),
                    email: Some(u.email),
                    password: Some(u.password),
                    created_at: u.created_at.map_or(now, millis),
                    last_login_at: None,
                    admin,
                    viewer_of: u.viewer_of.into_iter().collect(),
                },
            );
        }
        for a in file.app_users {
            inner.actors.insert(
                a.id,
                Actor {
                    id: a.id,
                    kind: "field_key",
                    display_name: a.display_name,
                    email: None,
                    password: None,
                    created_at: a.created_at.map_or(now, millis),
                    last_login_at: None,
                    admin: false,
                    viewer_of: Default::default(),
                },
            );
        }
        for p in file.projects {
            let mut project = Project {
                id: p.id,
                name: p.name,
                actee_id: p
                    .actee_id
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                description: p.description,
                created_at: p.created_at.map_or(now, millis),
                forms: Vec::new(),
            };
            for f in p.forms {
                validate_fields(&f.xml_form_id, &f.fields)?;
                let digests = generate::form_digests(&f.xml_form_id, &f.version);
                let created_at = f.created_at.map_or(now, millis);
                let mut form = Form {
                    xml_form_id: f.xml_form_id,
                    name: f.name,
                    version: f.version,
                    state: f.state.unwrap_or_else(|| "open".to_owned()),
                    created_at,
                    updated_at: f.updated_at.map(millis),
                    published_at: Some(f.published_at.map_or(created_at, millis)),
                    hash: f.hash.unwrap_or(digests.0),
                    sha: f.sha.unwrap_or(digests.1),
                    sha256: f.sha256.unwrap_or(digests.2),
                    fields: f.fields,
                    submissions: Vec::new(),
                };
                for s in f.submissions {
                    let review_state = match s.review_state.as_deref() {
                        None => None,
                        Some(r) => Some(ReviewState::parse(r).ok_or_else(|| {
                            SimError::Invalid(format!(
                                "submission {}: unknown reviewState {r}",
                                s.instance_id
                            ))
                        })?),
                    };
                    if form
                        .submissions
                        .iter()
                        .any(|x| x.instance_id == s.instance_id)
                    {
                        return Err(SimError::DuplicateInstance(
                            form.xml_form_id.clone(),
                            s.instance_id,
                        ));
                    }
                    let mut data = s.data;
                    let current = match lookup(&data, "/meta/instanceID") {
                        Some(Value::String(id)) if !id.is_empty() => id.clone(),
                        _ => s.instance_id.clone(),
                    };
                    if form.has_instance_id_field() {
                        set_path(
                            &mut data,
                            "/meta/instanceID",
                            Value::String(current.clone()),
                        );
                    }
                    let expected = form.binary_count(&data);
                    let seq = inner.next_seq;
                    inner.next_seq += 1;
                    let created_at = millis(s.created_at);
                    let updated_at = s.updated_at.map(millis);
                    form.submissions.push(Submission {
                        seq,
                        instance_id: s.instance_id,
                        current_instance_id: current,
                        data,
                        created_at,
                        version_created_at: s
                            .version_created_at
                            .map(millis)
                            .or(updated_at)
                            .unwrap_or(created_at),
                        updated_at,
                        deleted_at: s.deleted_at.map(millis),
                        submitter_id: s.submitter_id,
                        device_id: s.device_id,
                        user_agent: s.user_agent,
                        review_state,
                        edits: s.edits.unwrap_or(0),
                        form_version: s.form_version.unwrap_or_else(|| form.version.clone()),
                        attachments_present: s.attachments_present.unwrap_or(expected),
                        attachments_expected: s.attachments_expected.unwrap_or(expected),
                        status: s.status,
                    });
                }
                project.forms.push(form);
            }
            inner.projects.insert(project.id, project);
        }
        Ok(())
    }

    /// A simulator holding one Administrator ([`DEFAULT_EMAIL`] / [`DEFAULT_PASSWORD`], id 1),
    /// three app users (ids 2–4, the submitters), project 1 and the registration form
    /// [`REGISTRATION_FORM`] with `n` realistic submissions, the first at `start` and the others
    /// about `interval` apart (jittered, strictly increasing). Deterministic for a seed.
    pub fn generate(seed: u64, n: usize, start: DateTime<Utc>, interval: TimeDelta) -> Self {
        let sim = Self::new();
        generate::populate(&mut sim.write(), seed, n, start, interval);
        sim
    }

    // ------------------------------------------------------------------ configuration, clock

    /// Sets the `env.domain` that `@odata.context` and `@odata.nextLink` are built from
    /// (e.g. `http://127.0.0.1:8383`). Without one, `serve` uses the bound address and the bare
    /// router the request's `Host`.
    pub fn set_domain(&self, domain: impl Into<String>) {
        self.write().domain = Some(domain.into());
    }

    /// The simulator's current time (milliseconds).
    pub fn now(&self) -> DateTime<Utc> {
        self.read().now()
    }

    /// Stops the clock at `t`: sessions, review changes and deletions made over HTTP get `t`.
    pub fn freeze_clock(&self, t: DateTime<Utc>) {
        self.write().clock.frozen = Some(millis(t));
    }

    /// Lets the clock run again (keeping any offset from [`Self::advance_clock`]).
    pub fn unfreeze_clock(&self) {
        self.write().clock.frozen = None;
    }

    /// Moves the clock forward (or back, with a negative delta); e.g. 25 h to expire sessions.
    pub fn advance_clock(&self, by: TimeDelta) {
        let mut inner = self.write();
        match inner.clock.frozen {
            Some(t) => inner.clock.frozen = Some(t + by),
            None => inner.clock.offset += by,
        }
    }

    /// Lifetime of new sessions (Central's default: 24 h).
    pub fn set_session_lifetime(&self, lifetime: TimeDelta) {
        self.write().session_lifetime = lifetime;
    }

    // ------------------------------------------------------------------ knobs

    /// Every request waits `latency` before it is handled (zero to switch off).
    pub fn set_latency(&self, latency: Duration) {
        self.write().knobs.latency = latency;
    }

    /// The next `n` requests fail with `500 {"message":"Internal Server Error"}`.
    pub fn fail_next_requests(&self, n: u32) {
        self.write().knobs.fail_next = n;
    }

    /// While set, `POST /v1/sessions` answers 503 (nginx-style HTML body).
    pub fn set_sessions_unavailable(&self, unavailable: bool) {
        self.write().knobs.sessions_unavailable = unavailable;
    }

    /// Number of HTTP requests received so far (failed ones included).
    pub fn request_count(&self) -> u64 {
        self.read().requests
    }

    // ------------------------------------------------------------------ users and projects

    /// Adds a web user with the Administrator role (can read every project). Returns its id.
    pub fn add_user(&self, email: &str, password: &str) -> Result<u64, SimError> {
        self.insert_user(email, password, true)
    }

    /// Adds a web user without any role: it can sign in, but reading data gives 403.1.
    pub fn add_user_without_role(&self, email: &str, password: &str) -> Result<u64, SimError> {
        self.insert_user(email, password, false)
    }

    fn insert_user(&self, email: &str, password: &str, admin: bool) -> Result<u64, SimError> {
        let mut inner = self.write();
        if inner.actor_by_email(email).is_some() {
            return Err(SimError::DuplicateEmail(email.to_owned()));
        }
        let id = inner.next_actor_id();
        let now = inner.now();
        inner.actors.insert(
            id,
            Actor {
                id,
                kind: "user",
                display_name: email.to_owned(),
                email: Some(email.to_owned()),
                password: Some(password.to_owned()),
                created_at: now,
                last_login_at: None,
                admin,
                viewer_of: Default::default(),
            },
        );
        Ok(id)
    }

    /// Adds an app user (an enumerator's device credential) usable as a submitter.
    pub fn add_app_user(&self, display_name: &str) -> u64 {
        let mut inner = self.write();
        let id = inner.next_actor_id();
        let now = inner.now();
        inner.actors.insert(
            id,
            Actor {
                id,
                kind: "field_key",
                display_name: display_name.to_owned(),
                email: None,
                password: None,
                created_at: now,
                last_login_at: None,
                admin: false,
                viewer_of: Default::default(),
            },
        );
        id
    }

    /// Gives a user the Project Viewer role on a project (enough to read its submissions).
    pub fn grant_project_viewer(&self, user_id: u64, project: u64) -> Result<(), SimError> {
        let mut inner = self.write();
        inner.project(project)?;
        let actor = inner
            .actors
            .get_mut(&user_id)
            .ok_or(SimError::NoUser(user_id))?;
        actor.viewer_of.insert(project);
        Ok(())
    }

    /// Adds a project; returns its id.
    pub fn add_project(&self, name: &str) -> u64 {
        let mut inner = self.write();
        let id = inner.next_project_id();
        let now = inner.now();
        inner.projects.insert(
            id,
            Project {
                id,
                name: name.to_owned(),
                actee_id: uuid::Uuid::new_v4().to_string(),
                description: None,
                created_at: now,
                forms: Vec::new(),
            },
        );
        id
    }

    /// Adds a published, open form to a project.
    pub fn add_form(&self, project: u64, spec: FormSpec) -> Result<(), SimError> {
        validate_fields(&spec.xml_form_id, &spec.fields)?;
        let mut inner = self.write();
        let now = inner.now();
        let p = inner
            .projects
            .get_mut(&project)
            .ok_or(SimError::NoProject(project))?;
        if p.forms.iter().any(|f| f.xml_form_id == spec.xml_form_id) {
            return Err(SimError::Invalid(format!(
                "form {} already exists",
                spec.xml_form_id
            )));
        }
        let (hash, sha, sha256) = generate::form_digests(&spec.xml_form_id, &spec.version);
        p.forms.push(Form {
            xml_form_id: spec.xml_form_id,
            name: spec.name,
            version: spec.version,
            state: "open".to_owned(),
            created_at: now,
            updated_at: Some(now),
            published_at: Some(now),
            hash,
            sha,
            sha256,
            fields: spec.fields,
            submissions: Vec::new(),
        });
        Ok(())
    }

    // ------------------------------------------------------------------ submissions

    /// Adds a submission received at `submitted_at`; `data` is nested by group, keyed by the
    /// form's field names, values as ODK writes them in XML (strings; numbers are accepted).
    /// Returns the instanceId (`__id`).
    pub fn add_submission(
        &self,
        project: u64,
        form: &str,
        data: Value,
        submitted_at: DateTime<Utc>,
    ) -> Result<String, SimError> {
        self.add_submission_with(project, form, data, submitted_at, SubmissionMeta::default())
    }

    /// As [`Self::add_submission`], with explicit instance id, submitter, device and so on.
    pub fn add_submission_with(
        &self,
        project: u64,
        form: &str,
        data: Value,
        submitted_at: DateTime<Utc>,
        meta: SubmissionMeta,
    ) -> Result<String, SimError> {
        let mut inner = self.write();
        let default_submitter = inner.actors.keys().next().copied();
        let seq = inner.next_seq;
        let f = inner.form_mut(project, form)?;
        let mut data = if data.is_object() {
            data
        } else {
            Value::Object(serde_json::Map::new())
        };
        let instance_id = match (meta.instance_id, lookup(&data, "/meta/instanceID")) {
            (Some(id), _) => id,
            (None, Some(Value::String(id))) if !id.is_empty() => id.clone(),
            _ => format!("uuid:{}", uuid::Uuid::new_v4()),
        };
        if f.submissions.iter().any(|s| s.instance_id == instance_id) {
            return Err(SimError::DuplicateInstance(
                f.xml_form_id.clone(),
                instance_id,
            ));
        }
        if f.has_instance_id_field() {
            set_path(
                &mut data,
                "/meta/instanceID",
                Value::String(instance_id.clone()),
            );
        }
        let expected = f.binary_count(&data);
        let at = millis(submitted_at);
        f.submissions.push(Submission {
            seq,
            instance_id: instance_id.clone(),
            current_instance_id: instance_id.clone(),
            data,
            created_at: at,
            version_created_at: at,
            updated_at: None,
            deleted_at: None,
            submitter_id: meta.submitter_id.or(default_submitter),
            device_id: meta.device_id,
            user_agent: meta.user_agent,
            review_state: None,
            edits: 0,
            form_version: f.version.clone(),
            attachments_present: expected,
            attachments_expected: expected,
            status: meta.status,
        });
        inner.next_seq += 1;
        Ok(instance_id)
    }

    /// Replaces the data of a submission with a new version, as an edit in Central does:
    /// `__id` stays, `meta/instanceID` changes (taken from `data` or generated), `edits` + 1,
    /// `reviewState` becomes `edited` and `updatedAt` is set. Returns the new version's id.
    pub fn edit_submission(
        &self,
        project: u64,
        form: &str,
        instance_id: &str,
        data: Value,
        edited_at: DateTime<Utc>,
    ) -> Result<String, SimError> {
        let mut inner = self.write();
        let f = inner.form_mut(project, form)?;
        let has_meta = f.has_instance_id_field();
        let mut data = if data.is_object() {
            data
        } else {
            Value::Object(serde_json::Map::new())
        };
        let new_id = match lookup(&data, "/meta/instanceID") {
            Some(Value::String(id)) if !id.is_empty() && id != instance_id => id.clone(),
            _ => format!("uuid:{}", uuid::Uuid::new_v4()),
        };
        if has_meta {
            set_path(&mut data, "/meta/instanceID", Value::String(new_id.clone()));
        }
        let expected = f.binary_count(&data);
        let s = f.submission_mut(instance_id)?;
        let at = millis(edited_at);
        s.data = data;
        s.current_instance_id = new_id.clone();
        s.version_created_at = at;
        s.updated_at = Some(at);
        s.review_state = Some(ReviewState::Edited);
        s.edits += 1;
        s.attachments_expected = expected;
        s.attachments_present = expected;
        Ok(new_id)
    }

    /// Sets the review state (as `PATCH …/submissions/{id}` does); bumps `updatedAt`.
    pub fn set_review_state(
        &self,
        project: u64,
        form: &str,
        instance_id: &str,
        state: ReviewState,
        at: DateTime<Utc>,
    ) -> Result<(), SimError> {
        let mut inner = self.write();
        let s = inner.form_mut(project, form)?.submission_mut(instance_id)?;
        s.review_state = Some(state);
        s.updated_at = Some(millis(at));
        Ok(())
    }

    /// Soft-deletes a submission: `deletedAt` is set, `updatedAt` is left alone (as observed).
    pub fn delete_submission(
        &self,
        project: u64,
        form: &str,
        instance_id: &str,
        deleted_at: DateTime<Utc>,
    ) -> Result<(), SimError> {
        let mut inner = self.write();
        let s = inner.form_mut(project, form)?.submission_mut(instance_id)?;
        s.deleted_at = Some(millis(deleted_at));
        Ok(())
    }

    /// The `__id`s of a form's live (not deleted) submissions, newest first (OData's order).
    pub fn instance_ids(&self, project: u64, form: &str) -> Result<Vec<String>, SimError> {
        let inner = self.read();
        let f = inner.form(project, form)?;
        let mut subs: Vec<&Submission> = f
            .submissions
            .iter()
            .filter(|s| s.deleted_at.is_none())
            .collect();
        subs.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.seq)));
        Ok(subs.into_iter().map(|s| s.instance_id.clone()).collect())
    }

    /// The current data of a submission (nested by group, as stored).
    pub fn submission_data(
        &self,
        project: u64,
        form: &str,
        instance_id: &str,
    ) -> Result<Value, SimError> {
        let inner = self.read();
        let f = inner.form(project, form)?;
        f.submissions
            .iter()
            .find(|s| s.instance_id == instance_id)
            .map(|s| s.data.clone())
            .ok_or_else(|| SimError::NoSubmission(form.to_owned(), instance_id.to_owned()))
    }
}
