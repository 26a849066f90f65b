//! ODK Central's bodies as Central spells them.

use serde::{Deserialize, Serialize};

/// `POST /v1/sessions`.
#[derive(Serialize)]
pub struct SessionRequest<'a> {
    pub email: &'a str,
    pub password: &'a str,
}

#[derive(Deserialize)]
pub struct Session {
    pub token: String,
}

/// An OData feed page; only the count is read here.
#[derive(Deserialize)]
pub struct CountedFeed {
    #[serde(rename = "@odata.count")]
    pub count: Option<i64>,
}
