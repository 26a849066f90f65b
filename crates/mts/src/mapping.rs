//! From a received record to IDA demographics (spec §2): jq-path lookup, name and address
//! joins, `dob` normalisation, language tags and the mandatory-field checks in MTS's order.
//! Pure functions; no I/O.

use serde_json::{Map, Value, json};

use super::config::{AuthField, MtsConfig};
use super::wire::{Mapping, py_float};

/// A record that failed validation: `(errorCode, errorMessage)`.
pub type Invalid = (&'static str, &'static str);

/// A valid record: the vid and the demographics object sent to the authenticator.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub vid: String,
    pub demographics: Value,
}

/// Evaluates a mapping path (a jq path without its leading dot, spec §2.1) against `record`,
/// like `pyjq.first('.' + path)`: any error or a non-path program counts as absent. Supported:
/// `a.b`, `a[0]`, `a["k-1"]`, `.a` and an optional `?` after a step. Anything else is absent.
pub fn lookup<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = parse_path(path)?;
    let mut cur = record;
    for step in steps {
        cur = match (step, cur) {
            (Step::Key(k), Value::Object(m)) => m.get(&k)?,
            (Step::Index(i), Value::Array(a)) => {
                let idx = if i < 0 {
                    a.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    i as usize
                };
                a.get(idx)?
            }
            // jq: `.a` on null is null; on anything else an error. Both are "absent" here.
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
}

#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let s = path.trim();
    let b = s.as_bytes();
    let mut i = 0;
    let mut steps = Vec::new();
    let mut first = true;
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                if i >= b.len() {
                    return None;
                }
                if b[i] == b'[' || b[i] == b'"' {
                    continue;
                }
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let ident = &s[start..i];
                if ident.is_empty() || ident.as_bytes()[0].is_ascii_digit() {
                    return None;
                }
                steps.push(Step::Key(ident.to_owned()));
            }
            b'[' => {
                let end = s[i..].find(']')? + i;
                let inner = s[i + 1..end].trim();
                if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                    steps.push(Step::Key(q.to_owned()));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
                i = end + 1;
            }
            b'?' => i += 1,
            b'"' => {
                let end = s[i + 1..].find('"')? + i + 1;
                steps.push(Step::Key(s[i + 1..end].to_owned()));
                i = end + 1;
            }
            c if first && (c.is_ascii_alphabetic() || c == b'_') => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                steps.push(Step::Key(s[start..i].to_owned()));
            }
            _ => return None,
        }
        first = false;
    }
    Some(steps)
}

/// The text of a scalar: strings as they are, numbers and booleans as JSON text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// `vid` as MTS makes it (spec §2.2): falsy is absent; a number goes through a float.
pub fn vid_of(record: &Value, path: &str) -> Option<String> {
    match lookup(record, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => {
            let f = n.as_f64()?;
            (f != 0.0).then(|| py_float(f))
        }
        Value::Bool(true) => Some("True".into()),
        Value::Array(a) if !a.is_empty() => Some(Value::Array(a.clone()).to_string()),
        Value::Object(o) if !o.is_empty() => Some(Value::Object(o.clone()).to_string()),
        _ => None,
    }
}

/// `output.vid` of an invalid record: `input.vid` only when that key exists (spec §3, MTS bug
/// §13 #9 kept, since callers key on their own identifier anyway).
pub fn raw_vid(record: &Value) -> Option<String> {
    record.get("vid").and_then(text)
}

/// `YYYY/MM/DD` or `YYYY-MM-DD` → `YYYY/MM/DD`; anything else unchanged (spec §2.2).
pub fn normalise_dob(s: &str) -> String {
    for fmt in ["%Y/%m/%d", "%Y-%m-%d"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, fmt) {
            return d.format("%Y/%m/%d").to_string();
        }
    }
    s.to_owned()
}

/// Maps and validates one record; checks run in the order of spec §2.3, the first failure wins.
pub fn map_record(
    record: &Value,
    mapping: &Mapping,
    lang: &str,
    cfg: &MtsConfig,
) -> Result<Mapped, Invalid> {
    let vid =
        vid_of(record, &mapping.vid).ok_or(("ATS-REQ-009", "vid or its mapping not present"))?;
    let mut demo = Map::new();
    let tagged = |v: String| json!([{"language": lang, "value": v}]);

    let names: Vec<String> = mapping
        .name
        .iter()
        .filter_map(|p| lookup(record, p))
        .filter_map(text)
        .collect();
    let name = names
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if cfg.is_mandatory(AuthField::Name) {
        if names.is_empty() {
            return Err(("ATS-REQ-010", "name or its mapping not present"));
        }
        if name.is_empty() {
            return Err(("ATS-REQ-003", "name is not provided"));
        }
    }
    if !name.is_empty() {
        demo.insert("name".into(), tagged(name));
    }

    let gender = lookup(record, &mapping.gender).and_then(text);
    if cfg.is_mandatory(AuthField::Gender) {
        match gender.as_deref() {
            None => return Err(("ATS-REQ-011", "gender or its mapping not present")),
            Some("") => return Err(("ATS-REQ-004", "gender is empty")),
            _ => {}
        }
    }
    if let Some(g) = gender.filter(|g| !g.is_empty()) {
        demo.insert("gender".into(), tagged(g));
    }

    let dob = lookup(record, &mapping.dob).and_then(text);
    if cfg.is_mandatory(AuthField::Dob) {
        match dob.as_deref() {
            None => return Err(("ATS-REQ-012", "dateOfBirth or its mapping not present")),
            Some("") => return Err(("ATS-REQ-006", "date of birth is empty")),
            _ => {}
        }
    }
    if let Some(d) = dob.filter(|d| !d.is_empty()) {
        demo.insert("dob".into(), Value::String(normalise_dob(&d)));
    }

    let phone = lookup(record, &mapping.phone_number)
        .and_then(text)
        .filter(|s| !s.is_empty());
    if cfg.is_mandatory(AuthField::PhoneNumber) && phone.is_none() {
        return Err(("ATS-REQ-013", "phoneNumber or its mapping not present"));
    }
    if let Some(p) = phone {
        demo.insert("phoneNumber".into(), Value::String(p));
    }
    let email = lookup(record, &mapping.email_id)
        .and_then(text)
        .filter(|s| !s.is_empty());
    if cfg.is_mandatory(AuthField::EmailId) && email.is_none() {
        return Err(("ATS-REQ-014", "emailId or its mapping not present"));
    }
    if let Some(e) = email {
        demo.insert("emailId".into(), Value::String(e));
    }

    let parts: Vec<String> = mapping
        .full_address
        .iter()
        .filter_map(|p| lookup(record, p))
        .filter_map(text)
        .collect();
    let address = parts
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if cfg.is_mandatory(AuthField::FullAddress) {
        if parts.is_empty() {
            return Err(("ATS-REQ-015", "fullAddress or its mapping not present"));
        }
        if address.is_empty() {
            return Err(("ATS-REQ-008", "address is empty"));
        }
    }
    if !address.is_empty() {
        demo.insert("fullAddress".into(), tagged(address));
    }
    Ok(Mapped {
        vid,
        demographics: Value::Object(demo),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MtsConfig {
        MtsConfig::default()
    }

    #[test]
    fn paths() {
        let r = json!({"vid": "1", "personal": {"fn": "Ana"}, "contacts": [{"email": "a@b"}], "my-key": 3});
        assert_eq!(lookup(&r, "vid"), Some(&json!("1")));
        assert_eq!(lookup(&r, "personal.fn"), Some(&json!("Ana")));
        assert_eq!(lookup(&r, "contacts[0].email"), Some(&json!("a@b")));
        assert_eq!(lookup(&r, "[\"my-key\"]"), Some(&json!(3)));
        assert_eq!(lookup(&r, "my-key"), None);
        assert_eq!(lookup(&r, "missing.deeper"), None);
        assert_eq!(lookup(&r, "vid.x"), None);
    }

    #[test]
    fn joins_dob_and_lang() {
        let r = json!({"vid": 4088800261u64, "fn": "Ana", "ln": "", "sn": "Diaz", "gender": "Female",
                       "dob": "1990-01-31", "a1": "Main St", "a2": "Town"});
        let m = Mapping {
            name: vec!["fn".into(), "ln".into(), "sn".into()],
            full_address: vec!["a1".into(), "a2".into()],
            ..Mapping::default()
        };
        let out = map_record(&r, &m, "fra", &cfg()).unwrap();
        assert_eq!(out.vid, "4088800261.0");
        assert_eq!(
            out.demographics,
            json!({"name": [{"language": "fra", "value": "Ana Diaz"}],
                   "gender": [{"language": "fra", "value": "Female"}], "dob": "1990/01/31",
                   "fullAddress": [{"language": "fra", "value": "Main St, Town"}]})
        );
        assert_eq!(normalise_dob("31-01-1990"), "31-01-1990");
    }

    #[test]
    fn validation_order() {
        let m = Mapping::default();
        let c = cfg();
        let check = |r: Value| map_record(&r, &m, "eng", &c).err().map(|e| e.0);
        assert_eq!(check(json!({})), Some("ATS-REQ-009"));
        assert_eq!(check(json!({"vid": "", "name": ""})), Some("ATS-REQ-009"));
        assert_eq!(check(json!({"vid": "1"})), Some("ATS-REQ-010"));
        assert_eq!(check(json!({"vid": "1", "name": ""})), Some("ATS-REQ-003"));
        assert_eq!(check(json!({"vid": "1", "name": "A"})), Some("ATS-REQ-011"));
        assert_eq!(
            check(json!({"vid": "1", "name": "A", "gender": null})),
            Some("ATS-REQ-011")
        );
        assert_eq!(
            check(json!({"vid": "1", "name": "A", "gender": ""})),
            Some("ATS-REQ-004")
        );
        assert_eq!(
            check(json!({"vid": "1", "name": "A", "gender": "M"})),
            Some("ATS-REQ-012")
        );
        assert_eq!(
            check(json!({"vid": "1", "name": "A", "gender": "M", "dob": ""})),
            Some("ATS-REQ-006")
        );
        let base = json!({"vid": "1", "name": "A", "gender": "M", "dob": "x"});
        assert_eq!(check(base.clone()), Some("ATS-REQ-015"));
        let mut r = base.clone();
        r["fullAddress"] = json!("");
        assert_eq!(check(r.clone()), Some("ATS-REQ-008"));
        r["fullAddress"] = json!("Town");
        assert_eq!(check(r.clone()), None);
        let mut c2 = cfg();
        c2.mandatory_fields.push(AuthField::PhoneNumber);
        c2.mandatory_fields.push(AuthField::EmailId);
        assert_eq!(
            map_record(&r, &m, "eng", &c2).err().map(|e| e.0),
            Some("ATS-REQ-013")
        );
        r["phoneNumber"] = json!("123");
        assert_eq!(
            map_record(&r, &m, "eng", &c2).err().map(|e| e.0),
            Some("ATS-REQ-014")
        );
    }
}
