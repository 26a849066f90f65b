//! The life of an MTS connector and its runs, as types: a connector is `stopped` or `running`
//! (a recurring one on its schedule); a run is `queued`, `running` (sending chunks),
//! `submitted` (everything handed to MTS, callbacks owed), then `completed`, `failed` or
//! `stopped`. Stored as lowercase text, which is also how the API spells them.

use serde::{Deserialize, Serialize};

/// Declares a text-backed enum: `as_str`, `Display`, `TryFrom<String>` (how the store reads the
/// column) and serde/OpenAPI in the same lowercase spelling.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;

            fn try_from(s: String) -> Result<Self, UnknownValue> {
                $name::parse(&s).ok_or(UnknownValue {
                    what: stringify!($name),
                    value: s,
                })
            }
        }
    };
}

/// A stored value no variant spells (a manual edit, or a newer version's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

text_enum!(
    /// Whether a connector takes part in scheduling.
    ConnectorState {
        Stopped => "stopped",
        /// A recurring connector whose schedule fires runs.
        Running => "running",
    }
);

text_enum!(
    /// Where a run is.
    RunStatus {
        Queued => "queued",
        /// Sending chunks to MTS.
        Running => "running",
        /// Everything selected was handed to MTS; callbacks are owed.
        Submitted => "submitted",
        Completed => "completed",
        Failed => "failed",
        Stopped => "stopped",
    }
);

impl RunStatus {
    /// A worker may still send this run's records.
    pub fn is_sending(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// Nothing more will happen to the run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Stopped
        )
    }
}

text_enum!(
    /// What a run takes.
    RunKind {
        /// The connector's delta: new registrants, records due for a retry, ODK's next window.
        Delta => "delta",
        /// An operator's import: given ids, a filter, or an ODK window.
        Manual => "manual",
        /// Records released by the watchdog or failures an operator retried.
        Retry => "retry",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::try_from(s.as_str().to_owned()), Ok(*s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        for k in RunKind::ALL {
            assert_eq!(RunKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(
            ConnectorState::parse("running"),
            Some(ConnectorState::Running)
        );
        assert!(RunStatus::try_from("done".to_owned()).is_err());
        assert!(!RunStatus::Submitted.is_final() && RunStatus::Stopped.is_final());
    }
}
