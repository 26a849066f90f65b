//! Values bound to dynamically built SQL (filters, bulk statements). Every value reaches the
//! database as a bind parameter, never spliced into SQL text.

use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Date(NaiveDate),
    /// A timestamp. PostgreSQL receives a `timestamptz`; SQLite receives the same text sqlx
    /// writes for `DateTime<Utc>` columns (RFC 3339, `T`, `+00:00`, fraction only when non-zero),
    /// so text comparisons there order like the instants.
    DateTime(DateTime<Utc>),
}

/// Binds a list of [`SqlValue`]s to a query, for either backend.
#[macro_export]
macro_rules! bind_values {
    ($query:expr, $values:expr) => {{
        let mut q = $query;
        for v in $values {
            q = match v {
                $crate::SqlValue::Null => q.bind(None::<String>),
                $crate::SqlValue::Bool(b) => q.bind(*b),
                $crate::SqlValue::Int(i) => q.bind(*i),
                $crate::SqlValue::Float(f) => q.bind(*f),
                $crate::SqlValue::Text(s) => q.bind(s.clone()),
                $crate::SqlValue::Date(d) => q.bind(*d),
                $crate::SqlValue::DateTime(t) => q.bind(*t),
            };
        }
        q
    }};
}
