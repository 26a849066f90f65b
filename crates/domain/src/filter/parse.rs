//! JSON → [`Node`]: iterative Polish-notation parsing (right to left, with a stack, so nesting
//! cannot overflow the call stack) and the typing of each leaf's value against its field and
//! operator. Every error names the term and, for a leaf, the element.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde_json::Value;

use super::{
    AttrKey, Column, Element, Field, FilterError, Kind, Leaf, MAX_DEPTH, MAX_TERMS, MAX_VALUES,
    Node, Op, Operand, RegIdField, Scalar,
};

const EXPECTED_TERM: &str = r#"expected [field, operator, value] or "&", "|", "!""#;

pub(super) fn parse(v: &Value) -> Result<Node, FilterError> {
    let terms = v
        .as_array()
        .ok_or_else(|| FilterError::whole("a filter must be a JSON array of terms"))?;
    if terms.len() > MAX_TERMS {
        return Err(FilterError::whole(format!(
            "a filter may have at most {MAX_TERMS} terms, found {}",
            terms.len()
        )));
    }
    let mut budget = MAX_VALUES;
    // (node, depth); the top of the stack is the leftmost term parsed so far.
    let mut stack: Vec<(Node, usize)> = Vec::new();
    for (i, term) in terms.iter().enumerate().rev() {
        match term {
            Value::String(s) if s == "!" => {
                let (x, d) = pop_operands::<1>(&mut stack, i, s)?;
                let [x] = x;
                stack.push((Node::Not(Box::new(x)), check_depth(i, d[0] + 1)?));
            }
            Value::String(s) if s == "&" || s == "|" => {
                let (x, d) = pop_operands::<2>(&mut stack, i, s)?;
                let [a, b] = x;
                let is_and = s == "&";
                // Depth after flattening: children of a same-operator operand are adopted.
                let child = |n: &Node, d: usize| match (n, is_and) {
                    (Node::And(_), true) | (Node::Or(_), false) => d.saturating_sub(1),
                    _ => d,
                };
                let depth = 1 + child(&a, d[0]).max(child(&b, d[1]));
                let node = if is_and {
                    Node::and(a, b)
                } else {
                    Node::or(a, b)
                };
                stack.push((node, check_depth(i, depth)?));
            }
            Value::String(s) => {
                return Err(FilterError::at(
                    i,
                    format!(r#"{EXPECTED_TERM}, found "{s}""#),
                ));
            }
            Value::Array(a) if a.len() == 3 => {
                stack.push((parse_leaf(i, &a[0], &a[1], &a[2], &mut budget)?, 1));
            }
            _ => return Err(FilterError::at(i, EXPECTED_TERM)),
        }
    }
    let mut root = Node::And(Vec::new());
    while let Some((n, _)) = stack.pop() {
        root = Node::and(root, n);
    }
    Ok(root)
}

fn pop_operands<const N: usize>(
    stack: &mut Vec<(Node, usize)>,
    i: usize,
    op: &str,
) -> Result<([Node; N], [usize; N]), FilterError> {
    if stack.len() < N {
        let plural = if N == 1 { "" } else { "s" };
        return Err(FilterError::at(
            i,
            format!(r#""{op}" needs {N} operand{plural}, found {}"#, stack.len()),
        ));
    }
    let mut nodes = Vec::with_capacity(N);
    let mut depths = [0; N];
    for d in depths.iter_mut() {
        if let Some((n, depth)) = stack.pop() {
            nodes.push(n);
            *d = depth;
        }
    }
    let nodes: [Node; N] = nodes
        .try_into()
        .map_err(|_| FilterError::at(i, format!(r#""{op}" is missing operands"#)))?;
    Ok((nodes, depths))
}

fn check_depth(i: usize, depth: usize) -> Result<usize, FilterError> {
    if depth > MAX_DEPTH {
        Err(FilterError::at(
            i,
            format!("operators are nested deeper than {MAX_DEPTH} levels"),
        ))
    } else {
        Ok(depth)
    }
}

fn parse_leaf(
    i: usize,
    field: &Value,
    op: &Value,
    value: &Value,
    budget: &mut usize,
) -> Result<Node, FilterError> {
    let field_err = |m: String| FilterError::in_leaf(i, Element::Field, m);
    let op_err = |m: String| FilterError::in_leaf(i, Element::Operator, m);

    // Odoo's TRUE_LEAF (1, '=', 1) and FALSE_LEAF (0, '=', 1).
    if let Value::Number(n) = field {
        let is_const = op.as_str() == Some("=") && value.as_i64() == Some(1);
        return match n.as_i64() {
            Some(1) if is_const => Ok(Node::Const(true)),
            Some(0) if is_const => Ok(Node::Const(false)),
            _ => Err(field_err(format!(
                r#"the field must be a name; the only numeric leaves are [1,"=",1] and [0,"=",1], found {field}"#
            ))),
        };
    }
    let name = field
        .as_str()
        .ok_or_else(|| field_err(format!("the field must be a string, found {field}")))?;
    let field = parse_field(name).map_err(field_err)?;
    let op_str = op
        .as_str()
        .ok_or_else(|| op_err(format!("the operator must be a string, found {op}")))?;
    let op = Op::parse(op_str)
        .ok_or_else(|| op_err(format!(r#"operator "{op_str}" is not supported"#)))?;
    let operand = parse_operand(i, name, &field, op, value, budget)?;
    Ok(Node::Leaf(Leaf { field, op, operand }))
}

fn parse_field(name: &str) -> Result<Field, String> {
    if let Some(key) = name.strip_prefix("attributes.") {
        return AttrKey::parse(key).map(Field::Attribute).ok_or_else(|| {
            format!(r#"attribute key "{key}" must be 1 to 100 letters, digits or "_""#)
        });
    }
    if let Some(sub) = name.strip_prefix("reg_ids.") {
        let f = match sub {
            "id_type" | "id_type.name" => RegIdField::IdType,
            "value" => RegIdField::Value,
            "status" => RegIdField::Status,
            "expiry_date" => RegIdField::ExpiryDate,
            "description" => RegIdField::Description,
            _ => {
                return Err(format!(
                    r#"unknown field "{name}" (reg_ids has id_type, value, status, expiry_date, description)"#
                ));
            }
        };
        return Ok(Field::RegId(f));
    }
    let f = match name {
        "is_registrant" => Field::IsRegistrant,
        "reg_ids" => Field::RegIds,
        "kind" => Field::Column(Column::GroupKind),
        "created_at" => Field::Column(Column::CreatedAt),
        "updated_at" => Field::Column(Column::UpdatedAt),
        _ => match Column::ALL.iter().find(|c| c.name() == name) {
            Some(c) => Field::Column(*c),
            None => return Err(format!(r#"unknown field "{name}""#)),
        },
    };
    Ok(f)
}

/// What the value of a field may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Col(Kind),
    /// `attributes.<key>`: string, number, boolean or null.
    Attr,
    RegIds,
}

fn value_kind(field: &Field) -> ValueKind {
    match field {
        Field::Column(c) => ValueKind::Col(c.kind()),
        Field::RegId(f) => ValueKind::Col(f.kind()),
        Field::IsRegistrant => ValueKind::Col(Kind::Bool),
        Field::Attribute(_) => ValueKind::Attr,
        Field::RegIds => ValueKind::RegIds,
    }
}

fn parse_operand(
    i: usize,
    name: &str,
    field: &Field,
    op: Op,
    value: &Value,
    budget: &mut usize,
) -> Result<Operand, FilterError> {
    let op_err = |m: String| FilterError::in_leaf(i, Element::Operator, m);
    let val_err = |m: String| FilterError::in_leaf(i, Element::Value, m);
    let kind = value_kind(field);
    let ops = op.as_str();

    if kind == ValueKind::RegIds {
        return match (op, is_unset(value)) {
            (Op::Eq | Op::Ne, true) => Ok(Operand::Unset),
            (Op::Eq | Op::Ne, false) => Err(val_err(format!(
                r#""reg_ids" can only be compared with false; use "reg_ids.<field>", found {value}"#
            ))),
            _ => Err(op_err(format!(
                r#"operator "{ops}" is not supported for "reg_ids" (use = false or != false)"#
            ))),
        };
    }

    match op {
        Op::Eq | Op::Ne => {
            if value.is_array() {
                return Err(val_err(format!(
                    r#"a list needs "in" or "not in", not "{ops}""#
                )));
            }
            Ok(match scalar_or_unset(name, kind, value).map_err(val_err)? {
                Some(s) => Operand::Scalar(s),
                None => Operand::Unset,
            })
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            if kind == ValueKind::Col(Kind::Bool) {
                return Err(op_err(format!(
                    r#"operator "{ops}" is not supported for the boolean field "{name}""#
                )));
            }
            if value.is_array() {
                return Err(val_err(format!(
                    r#"operator "{ops}" needs one value, not a list"#
                )));
            }
            match scalar_or_unset(name, kind, value).map_err(val_err)? {
                Some(Scalar::Bool(_)) => Err(val_err(format!(
                    r#"operator "{ops}" cannot compare "{name}" with a boolean"#
                ))),
                Some(s) => Ok(Operand::Scalar(s)),
                None => Err(val_err(format!(
                    r#"operator "{ops}" cannot compare "{name}" with false or null"#
                ))),
            }
        }
        Op::Like | Op::NotLike | Op::ILike | Op::NotILike | Op::EqLike | Op::EqILike => {
            if !matches!(kind, ValueKind::Col(Kind::Text) | ValueKind::Attr) {
                return Err(op_err(format!(
                    r#"operator "{ops}" is only supported for text fields, not "{name}""#
                )));
            }
            let Some(p) = value.as_str() else {
                return Err(val_err(format!(
                    r#"operator "{ops}" needs a string value, found {value}"#
                )));
            };
            if matches!(op, Op::EqLike | Op::EqILike) && ends_with_lone_escape(p) {
                return Err(val_err(format!(
                    r#"the pattern "{p}" ends with a lone "\" (escape it as "\\")"#
                )));
            }
            Ok(Operand::Pattern(p.to_owned()))
        }
        Op::In | Op::NotIn => {
            // Odoo accepts a single value as a one-element list.
            let items: &[Value] = match value {
                Value::Array(a) => a,
                v => std::slice::from_ref(v),
            };
            if items.len() > *budget {
                return Err(val_err(format!(
                    "the filter's lists may hold at most {MAX_VALUES} values in all"
                )));
            }
            *budget -= items.len();
            let mut values = Vec::with_capacity(items.len());
            let mut unset = false;
            for (j, item) in items.iter().enumerate() {
                if item.is_array() || item.is_object() {
                    return Err(val_err(format!("list item {j} must be a single value")));
                }
                match scalar_or_unset(name, kind, item)
                    .map_err(|m| val_err(format!("list item {j}: {m}")))?
                {
                    Some(s) => {
                        if let Some(first) = values.first()
                            && super::AttrType::of(first) != super::AttrType::of(&s)
                        {
                            return Err(val_err(format!(
                                "list item {j}: every value of the list must have the same type"
                            )));
                        }
                        values.push(s);
                    }
                    None => unset = true,
                }
            }
            Ok(Operand::List { values, unset })
        }
    }
}

fn is_unset(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

/// Types one value for the field; `None` means "unset".
fn scalar_or_unset(name: &str, kind: ValueKind, v: &Value) -> Result<Option<Scalar>, String> {
    match kind {
        // Boolean columns are NOT NULL: false (and null, which Odoo treats as false) is a value.
        ValueKind::Col(Kind::Bool) => match v {
            Value::Bool(b) => Ok(Some(Scalar::Bool(*b))),
            Value::Null => Ok(Some(Scalar::Bool(false))),
            _ => Err(format!(r#""{name}" is a boolean field: expected true or false, found {v}"#)),
        },
        // On attributes false is a JSON boolean; only null means unset.
        ValueKind::Attr => match v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(Scalar::Bool(*b))),
            Value::String(s) => Ok(Some(Scalar::Text(s.clone()))),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(Scalar::Int(i))),
                (None, Some(f)) if f.is_finite() => Ok(Some(Scalar::Float(f))),
                _ => Err(format!("the number {n} is out of range")),
            },
            _ => Err(format!(
                r#""{name}" compares with a string, number, boolean or null, found {v}"#
            )),
        },
        _ if is_unset(v) => Ok(None),
        ValueKind::Col(Kind::Text) => match v {
            Value::String(s) => Ok(Some(Scalar::Text(s.clone()))),
            _ => Err(format!(r#""{name}" is a text field: expected a string, found {v}"#)),
        },
        ValueKind::Col(Kind::Int) => match v.as_i64() {
            Some(n) => Ok(Some(Scalar::Int(n))),
            None => Err(format!(r#""{name}" is an integer field: expected an integer, found {v}"#)),
        },
        ValueKind::Col(Kind::Date) => v
            .as_str()
            .and_then(parse_date)
            .map(|d| Some(Scalar::Date(d)))
            .ok_or_else(|| format!(r#""{name}" is a date: expected "YYYY-MM-DD", found {v}"#)),
        ValueKind::Col(Kind::DateTime) => v
            .as_str()
            .and_then(parse_datetime)
            .map(|t| Some(Scalar::DateTime(t)))
            .ok_or_else(|| {
                format!(
                    r#""{name}" is a date and time: expected "YYYY-MM-DD HH:MM:SS" or RFC 3339, found {v}"#
                )
            }),
        ValueKind::RegIds => Err(format!(r#""{name}" can only be compared with false"#)),
    }
}

fn year_ok(y: i32) -> bool {
    (1..=9999).contains(&y)
}

/// Strict `YYYY-MM-DD` (years 1–9999), so that values sort like the stored text on SQLite.
pub(super) fn parse_date(s: &str) -> Option<NaiveDate> {
    use chrono::Datelike;
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    (year_ok(d.year()) && d.format("%Y-%m-%d").to_string() == s).then_some(d)
}

/// `YYYY-MM-DD HH:MM:SS[.f]` (UTC), RFC 3339, or a date (midnight UTC); truncated to
/// microseconds.
pub(super) fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        t.and_utc()
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        t.and_utc()
    } else {
        parse_date(s)?.and_hms_opt(0, 0, 0)?.and_utc()
    };
    if !year_ok(t.year()) {
        return None;
    }
    t.with_nanosecond(t.nanosecond() / 1000 * 1000)
}

/// Whether a LIKE pattern ends with an escape character that escapes nothing.
fn ends_with_lone_escape(p: &str) -> bool {
    p.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}
