//! An ordered JSON value and its writer.
//!
//! Central is a Node.js server: the key order of its documents is the insertion order of
//! JavaScript objects, and its numbers are printed the way `JSON.stringify` prints them. The
//! workspace's `serde_json` sorts object keys (no `preserve_order`, and turning that feature on
//! would change every other crate's output), so the documents whose order matters are built
//! with this small type instead. It must not grow into a general JSON library.

use serde_json::Value;

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// An already formatted number (see [`js_number`]); written verbatim.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    pub(crate) fn opt_str(s: Option<impl Into<String>>) -> Self {
        s.map_or(Self::Null, |s| Self::Str(s.into()))
    }

    pub(crate) fn int(n: i64) -> Self {
        Self::Num(n.to_string())
    }

    pub(crate) fn float(f: f64) -> Self {
        if f.is_finite() {
            Self::Num(js_number(f))
        } else {
            // JSON.stringify(NaN) is "null".
            Self::Null
        }
    }

    pub(crate) fn obj() -> ObjBuilder {
        ObjBuilder(Vec::new())
    }

    /// Converts a `serde_json::Value` (keys come out sorted, which is all we can know).
    pub(crate) fn from_value(v: &Value) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Num(n.to_string()),
            Value::String(s) => Self::Str(s.clone()),
            Value::Array(a) => Self::Arr(a.iter().map(Self::from_value).collect()),
            Value::Object(o) => Self::Obj(
                o.iter()
                    .map(|(k, v)| (k.clone(), Self::from_value(v)))
                    .collect(),
            ),
        }
    }

    pub(crate) fn to_json_string(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub(crate) fn write(&self, out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(true) => out.push_str("true"),
            Self::Bool(false) => out.push_str("false"),
            Self::Num(n) => out.push_str(n),
            Self::Str(s) => write_str(s, out),
            Self::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Self::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Builds a [`Json::Obj`] member by member.
pub(crate) struct ObjBuilder(Vec<(String, Json)>);

impl ObjBuilder {
    pub(crate) fn put(mut self, key: impl Into<String>, value: Json) -> Self {
        self.0.push((key.into(), value));
        self
    }

    pub(crate) fn build(self) -> Json {
        Json::Obj(self.0)
    }
}

/// Writes a JSON string literal with the escapes `JSON.stringify` uses (serde_json's are the
/// same: `"`, `\`, control characters; no escaping of `/` or of non-ASCII).
fn write_str(s: &str, out: &mut String) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serialising a &str cannot fail; keep a plain fallback rather than a panic.
        Err(_) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
    }
}

/// Formats a finite number the way JavaScript's `Number.prototype.toString` does for the values
/// ODK forms carry: integral values without a fraction (`3`, not `3.0`), others in the shortest
/// round-tripping form, exponent notation below 1e-6 and from 1e21 on.
pub(crate) fn js_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_owned();
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        // Rust's Display is the shortest round-trip representation without an exponent.
        let s = format!("{f}");
        s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
    } else {
        // `{:e}` gives e.g. "1.5e-7"; JavaScript writes "1.5e-7" and "1e+21".
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(js_number(3.0), "3");
        assert_eq!(js_number(-2.5), "-2.5");
        assert_eq!(js_number(0.1), "0.1");
        assert_eq!(js_number(401.2), "401.2");
        assert_eq!(js_number(1e21), "1e+21");
        assert_eq!(js_number(1.5e-7), "1.5e-7");
    }

    #[test]
    fn objects_keep_their_order() {
        let j = Json::obj()
            .put("value", Json::Arr(vec![]))
            .put("@odata.count", Json::int(3))
            .build();
        assert_eq!(j.to_json_string(), r#"{"value":[],"@odata.count":3}"#);
        assert_eq!(
            Json::str("Lucía \"x\"\n").to_json_string(),
            "\"Lucía \\\"x\\\"\\n\""
        );
    }
}
