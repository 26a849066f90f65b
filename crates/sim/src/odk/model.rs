//! The simulator's state: actors (web users and app users), sessions, projects, forms with their
//! field schema, and submissions with Central's `__system` metadata. Also the documented JSON
//! file shape that [`super::OdkSim::from_json_file`] loads. Nothing here knows about HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::SimError;

/// The review state of a submission (`null` in Central's JSON means "received").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewState {
    HasIssues,
    Edited,
    Rejected,
    Approved,
}

impl ReviewState {
    /// The spelling Central uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HasIssues => "hasIssues",
            Self::Edited => "edited",
            Self::Rejected => "rejected",
            Self::Approved => "approved",
        }
    }

    /// Parses Central's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hasIssues" => Some(Self::HasIssues),
            "edited" => Some(Self::Edited),
            "rejected" => Some(Self::Rejected),
            "approved" => Some(Self::Approved),
            _ => None,
        }
    }
}

/// One entry of a form's schema, spelled as Central's `GET …/fields` spells it.
///
/// `path` is the XPath below the instance root (`/person/name`), `kind` the field type
/// (`structure`, `string`, `int`, `decimal`, `date`, `dateTime`, `time`, `boolean`, `geopoint`,
/// `geotrace`, `geoshape`, `binary`, `barcode`, …; `select1` fields are `string`, select-multiple
/// ones `string` with `select_multiple`). Fields must be listed depth-first, a group before its
/// children, as Central lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Field {
    pub path: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub binary: Option<bool>,
    #[serde(default)]
    pub select_multiple: Option<bool>,
}

impl Field {
    /// A field of `kind` at `path`; the name is the last path segment.
    pub fn new(path: &str, kind: &str) -> Self {
        Self {
            path: path.to_owned(),
            name: None,
            kind: kind.to_owned(),
            binary: None,
            select_multiple: None,
        }
    }

    /// The field's own name (the last path segment unless given).
    pub fn name(&self) -> &str {
        match &self.name {
            Some(n) => n,
            None => self.path.rsplit('/').next().unwrap_or(&self.path),
        }
    }

    /// The path of the enclosing group (`""` for top-level fields).
    pub(crate) fn parent_path(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(p, _)| p)
    }

    pub(crate) fn is_structure(&self) -> bool {
        self.kind == "structure"
    }
}

/// A form to add with [`super::OdkSim::add_form`].
#[derive(Debug, Clone)]
pub struct FormSpec {
    pub xml_form_id: String,
    pub name: Option<String>,
    pub version: String,
    pub fields: Vec<Field>,
}

/// Optional metadata of a new submission ([`super::OdkSim::add_submission_with`]).
#[derive(Debug, Clone, Default)]
pub struct SubmissionMeta {
    /// `uuid:…`; taken from `data.meta.instanceID` when absent there too, generated otherwise.
    pub instance_id: Option<String>,
    /// The submitting actor; defaults to the actor with the lowest id.
    pub submitter_id: Option<u64>,
    pub device_id: Option<String>,
    pub user_agent: Option<String>,
    /// `notDecrypted` or `missingEncryptedFormData` for an encrypted submission.
    pub status: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub(crate) id: u64,
    /// `user` (web user) or `field_key` (app user).
    pub(crate) kind: &'static str,
    pub(crate) display_name: String,
    pub(crate) email: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) last_login_at: Option<DateTime<Utc>>,
    pub(crate) admin: bool,
    pub(crate) viewer_of: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) actor_id: u64,
    pub(crate) expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) actee_id: String,
    pub(crate) description: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) forms: Vec<Form>,
}

#[derive(Debug, Clone)]
pub(crate) struct Form {
    pub(crate) xml_form_id: String,
    pub(crate) name: Option<String>,
    pub(crate) version: String,
    pub(crate) state: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: Option<DateTime<Utc>>,
    pub(crate) published_at: Option<DateTime<Utc>>,
    pub(crate) hash: String,
    pub(crate) sha: String,
    pub(crate) sha256: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) submissions: Vec<Submission>,
}

#[derive(Debug, Clone)]
pub(crate) struct Submission {
    /// Insertion order; Central's internal `submissions.id`, the tie-breaker of every sort.
    pub(crate) seq: u64,
    /// The original instanceId: `__id`, stable across edits.
    pub(crate) instance_id: String,
    /// The instanceID of the current version (`meta/instanceID`).
    pub(crate) current_instance_id: String,
    pub(crate) data: Value,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) version_created_at: DateTime<Utc>,
    pub(crate) updated_at: Option<DateTime<Utc>>,
    pub(crate) deleted_at: Option<DateTime<Utc>>,
    pub(crate) submitter_id: Option<u64>,
    pub(crate) device_id: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) review_state: Option<ReviewState>,
    pub(crate) edits: u32,
    pub(crate) form_version: String,
    pub(crate) attachments_present: u32,
    pub(crate) attachments_expected: u32,
    pub(crate) status: Option<String>,
}

/// Failure and latency knobs (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct Knobs {
    pub(crate) latency: Duration,
    pub(crate) fail_next: u32,
    pub(crate) sessions_unavailable: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    pub(crate) frozen: Option<DateTime<Utc>>,
    pub(crate) offset: TimeDelta,
}

#[derive(Debug, Clone)]
pub(crate) struct Inner {
    pub(crate) domain: Option<String>,
    pub(crate) clock: Clock,
    pub(crate) session_lifetime: TimeDelta,
    pub(crate) actors: BTreeMap<u64, Actor>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) projects: BTreeMap<u64, Project>,
    pub(crate) next_seq: u64,
    pub(crate) knobs: Knobs,
    pub(crate) requests: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            domain: None,
            clock: Clock::default(),
            // config/default.json: default.sessionLifetime = 86400 s.
            session_lifetime: TimeDelta::hours(24),
            actors: BTreeMap::new(),
            sessions: HashMap::new(),
            projects: BTreeMap::new(),
            next_seq: 1,
            knobs: Knobs::default(),
            requests: 0,
        }
    }
}

/// Truncates to milliseconds: Central's timestamps reach clients as JavaScript dates, and a
/// watermark read from a response must compare equal to the stored value.
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

impl Inner {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        millis(
            self.clock
                .frozen
                .unwrap_or_else(|| Utc::now() + self.clock.offset),
        )
    }

    pub(crate) fn project(&self, id: u64) -> Result<&Project, SimError> {
        self.projects.get(&id).ok_or(SimError::NoProject(id))
    }

    pub(crate) fn form(&self, project: u64, form: &str) -> Result<&Form, SimError> {
        self.project(project)?
            .forms
            .iter()
            .find(|f| f.xml_form_id == form)
            .ok_or_else(|| SimError::NoForm(project, form.to_owned()))
    }

    pub(crate) fn form_mut(&mut self, project: u64, form: &str) -> Result<&mut Form, SimError> {
        self.projects
            .get_mut(&project)
            .ok_or(SimError::NoProject(project))?
            .forms
            .iter_mut()
            .find(|f| f.xml_form_id == form)
            .ok_or_else(|| SimError::NoForm(project, form.to_owned()))
    }

    pub(crate) fn next_actor_id(&self) -> u64 {
        self.actors.keys().next_back().map_or(1, |id| id + 1)
    }

    pub(crate) fn next_project_id(&self) -> u64 {
        self.projects.keys().next_back().map_or(1, |id| id + 1)
    }

    pub(crate) fn actor_by_email(&self, email: &str) -> Option<&Actor> {
        self.actors
            .values()
            .find(|a| a.email.as_deref() == Some(email))
    }

    /// Whether the actor has `submission.read` / `project.read` on the project (Administrator,
    /// or Project Viewer there; Project Manager is not modelled separately).
    pub(crate) fn can_read(&self, actor_id: u64, project: u64) -> bool {
        self.actors
            .get(&actor_id)
            .is_some_and(|a| a.admin || a.viewer_of.contains(&project))
    }

    pub(crate) fn display_name(&self, actor_id: Option<u64>) -> Option<&str> {
        actor_id
            .and_then(|id| self.actors.get(&id))
            .map(|a| a.display_name.as_str())
    }
}

impl Form {
    pub(crate) fn submission_mut(
        &mut self,
        instance_id: &str,
    ) -> Result<&mut Submission, SimError> {
        let xml_form_id = self.xml_form_id.clone();
        self.submissions
            .iter_mut()
            .find(|s| s.instance_id == instance_id)
            .ok_or_else(|| SimError::NoSubmission(xml_form_id, instance_id.to_owned()))
    }

    /// Counts the non-empty binary fields of `data` (attachments expected).
    pub(crate) fn binary_count(&self, data: &Value) -> u32 {
        let n = self
            .fields
            .iter()
            .filter(|f| f.kind == "binary" || f.binary == Some(true))
            .filter(|f| match lookup(data, &f.path) {
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Null) | None => false,
                Some(_) => true,
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether the schema has `/meta/instanceID`.
    pub(crate) fn has_instance_id_field(&self) -> bool {
        self.fields.iter().any(|f| f.path == "/meta/instanceID")
    }
}

/// Looks a field path (`/person/name`) up in nested submission data.
pub(crate) fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .try_fold(data, |v, seg| v.get(seg))
}

/// Writes `value` at `path` in nested data, creating groups on the way.
pub(crate) fn set_path(data: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut cur = data;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = cur else { return };
        if i + 1 == segs.len() {
            map.insert((*seg).to_owned(), value);
            return;
        }
        cur = map
            .entry((*seg).to_owned())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
}

// ------------------------------------------------------------------------------------------------
// The JSON file shape of `OdkSim::from_json_file` (documented in the module doc and README).

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SimFile {
    #[serde(default)]
    pub(crate) domain: Option<String>,
    #[serde(default)]
    pub(crate) users: Vec<FileUser>,
    #[serde(default)]
    pub(crate) app_users: Vec<FileAppUser>,
    #[serde(default)]
    pub(crate) projects: Vec<FileProject>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileUser {
    pub(crate) id: u64,
    pub(crate) email: String,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<DateTime<Utc>>,
    /// `admin` (Administrator, the default) or `none`.
    #[serde(default)]
    pub(crate) role: Option<String>,
    /// Projects on which the user is Project Viewer.
    #[serde(default)]
    pub(crate) viewer_of: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileAppUser {
    pub(crate) id: u64,
    pub(crate) display_name: String,
    #[serde(default)]
    pub(crate) created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileProject {
    pub(crate) id: u64,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) actee_id: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) forms: Vec<FileForm>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileForm {
    pub(crate) xml_form_id: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) hash: Option<String>,
    #[serde(default)]
    pub(crate) sha: Option<String>,
    #[serde(default)]
    pub(crate) sha256: Option<String>,
    pub(crate) fields: Vec<Field>,
    #[serde(default)]
    pub(crate) submissions: Vec<FileSubmission>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileSubmission {
    pub(crate) instance_id: String,
    /// The submission date (`__system/submissionDate`).
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) data: Value,
    #[serde(default)]
    pub(crate) submitter_id: Option<u64>,
    #[serde(default)]
    pub(crate) device_id: Option<String>,
    #[serde(default)]
    pub(crate) user_agent: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) review_state: Option<String>,
    #[serde(default)]
    pub(crate) edits: Option<u32>,
    #[serde(default)]
    pub(crate) form_version: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) attachments_present: Option<u32>,
    #[serde(default)]
    pub(crate) attachments_expected: Option<u32>,
    /// When the current version was created (defaults to `updatedAt` after edits, else `createdAt`).
    #[serde(default)]
    pub(crate) version_created_at: Option<DateTime<Utc>>,
}

/// Checks a schema: paths start with `/`, parents exist and come first, no repeats.
pub(crate) fn validate_fields(xml_form_id: &str, fields: &[Field]) -> Result<(), SimError> {
    let mut groups: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for f in fields {
        let bad =
            |why: &str| SimError::Invalid(format!("form {xml_form_id}: field {}: {why}", f.path));
        if !f.path.starts_with('/') || f.path.len() < 2 {
            return Err(bad("the path must start with '/'"));
        }
        if f.kind == "repeat" {
            return Err(bad("repeat groups are not simulated"));
        }
        let parent = f.parent_path();
        if !parent.is_empty() && !groups.contains(parent) {
            return Err(bad(
                "its group must be listed (as type structure) before it",
            ));
        }
        if !seen.insert(&f.path) {
            return Err(bad("listed twice"));
        }
        if f.is_structure() {
            groups.insert(&f.path);
        }
    }
    Ok(())
}
