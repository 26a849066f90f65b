//! Roles of API keys and console users. Each endpoint names the roles it admits.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including ID types, keys and jobs.
    Admin,
    /// Creates and changes registrants.
    Registrar,
    /// Reads only.
    Viewer,
    /// External systems calling back (MTS, payment hubs): callback endpoints only.
    Connector,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Registrar, Role::Viewer, Role::Connector];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Registrar => "registrar",
            Role::Viewer => "viewer",
            Role::Connector => "connector",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// May read the registry (the connector role may not: it only delivers callbacks).
    pub fn can_read(self) -> bool {
        matches!(self, Role::Admin | Role::Registrar | Role::Viewer)
    }

    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin | Role::Registrar)
    }

    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
