//! The in-memory evaluator: [`Domain::matches`] decides for one registrant and its IDs, with
//! exactly the semantics the SQL compiler (`g2p_store::filter_sql`) gives the database. The
//! per-value rules live in [`Operand::test`] / [`Operand::test_negated`] so that the compiler can
//! fold constant leaves (`is_registrant`) with the very same code.

use std::cmp::Ordering;

use serde_json::Value;

use super::{AttrType, Column, Domain, Field, Leaf, Node, Op, Operand, RegIdField, Scalar};
use crate::{RegId, Registrant};

impl Domain {
    /// Whether the registrant matches. `ids` are the registrant's typed IDs (all of them, as the
    /// store holds them); `reg_ids.*` leaves look only at this slice.
    pub fn matches(&self, r: &Registrant, ids: &[RegId]) -> bool {
        eval_node(&self.root, false, r, ids)
    }
}

/// `neg` carries a pending `!` down the tree, as Odoo's `distribute_not` does.
fn eval_node(n: &Node, neg: bool, r: &Registrant, ids: &[RegId]) -> bool {
    match n {
        Node::Const(b) => *b != neg,
        Node::Not(x) => eval_node(x, !neg, r, ids),
        Node::And(xs) if !neg => xs.iter().all(|x| eval_node(x, false, r, ids)),
        Node::And(xs) => xs.iter().any(|x| eval_node(x, true, r, ids)),
        Node::Or(xs) if !neg => xs.iter().any(|x| eval_node(x, false, r, ids)),
        Node::Or(xs) => xs.iter().all(|x| eval_node(x, true, r, ids)),
        Node::Leaf(l) if !neg => eval_leaf(l, l.op, false, r, ids),
        Node::Leaf(l) => match l.negated_op() {
            Some(op) => eval_leaf(l, op, false, r, ids),
            None => eval_leaf(l, l.op, true, r, ids),
        },
    }
}

fn eval_leaf(l: &Leaf, op: Op, whole_negated: bool, r: &Registrant, ids: &[RegId]) -> bool {
    let slot = match &l.field {
        Field::RegId(f) => {
            let any = ids
                .iter()
                .any(|id| l.operand.test(op, reg_id_value(*f, id).as_ref()));
            return any != whole_negated;
        }
        Field::RegIds => (!ids.is_empty()).then_some(Scalar::Bool(true)),
        Field::IsRegistrant => Some(Scalar::Bool(true)),
        Field::Column(c) => column_value(*c, r),
        Field::Attribute(k) => attribute_value(r.attributes.get(k.as_str()), l.attr_type()),
    };
    if whole_negated {
        l.operand.test_negated(op, slot.as_ref())
    } else {
        l.operand.test(op, slot.as_ref())
    }
}

/// A registrant's column as a filter value; `None` is NULL.
pub fn column_value(c: Column, r: &Registrant) -> Option<Scalar> {
    let text = |s: &Option<String>| s.clone().map(Scalar::Text);
    match c {
        Column::Id => Some(Scalar::Int(r.id)),
        Column::Name => Some(Scalar::Text(r.name.clone())),
        Column::GivenName => text(&r.given_name),
        Column::FamilyName => text(&r.family_name),
        Column::AddlName => text(&r.addl_name),
        Column::Gender => text(&r.gender),
        Column::BirthPlace => text(&r.birth_place),
        Column::Address => text(&r.address),
        Column::Phone => text(&r.phone),
        Column::Email => text(&r.email),
        Column::DisabledReason => text(&r.disabled_reason),
        Column::GroupKind => text(&r.group_kind),
        Column::ExternalKey => text(&r.external_key),
        Column::Birthdate => r.birthdate.map(Scalar::Date),
        Column::RegistrationDate => r.registration_date.map(Scalar::Date),
        Column::CreatedAt => Some(Scalar::DateTime(r.created_at)),
        Column::UpdatedAt => Some(Scalar::DateTime(r.updated_at)),
        Column::IsGroup => Some(Scalar::Bool(r.is_group)),
        Column::Disabled => Some(Scalar::Bool(r.disabled)),
        Column::BirthdateNotExact => Some(Scalar::Bool(r.birthdate_not_exact)),
    }
}

/// A typed ID's field as a filter value; `None` is NULL.
pub fn reg_id_value(f: RegIdField, id: &RegId) -> Option<Scalar> {
    match f {
        RegIdField::IdType => Some(Scalar::Text(id.id_type.clone())),
        RegIdField::Value => Some(Scalar::Text(id.value.clone())),
        RegIdField::Status => Some(Scalar::Text(id.status.as_str().to_owned())),
        RegIdField::ExpiryDate => id.expiry_date.map(Scalar::Date),
        RegIdField::Description => id.description.clone().map(Scalar::Text),
    }
}

/// An attribute as seen by a leaf comparing with type `t`: missing, `null` or another JSON type
/// is `None` (NULL). For [`AttrType::Any`] only presence matters.
pub fn attribute_value(v: Option<&Value>, t: AttrType) -> Option<Scalar> {
    match (v?, t) {
        (Value::Null, _) => None,
        (Value::String(s), AttrType::Text) => Some(Scalar::Text(s.clone())),
        (Value::Number(n), AttrType::Number) => match n.as_i64() {
            Some(i) => Some(Scalar::Int(i)),
            None => n.as_f64().map(Scalar::Float),
        },
        (Value::Bool(b), AttrType::Bool) => Some(Scalar::Bool(*b)),
        (_, AttrType::Any) => Some(Scalar::Bool(true)),
        _ => None,
    }
}

/// Orders two values of the same type (numbers across integer/float); `None` when they are not
/// comparable.
pub fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        // Byte order, as SQLite's BINARY collation and PostgreSQL's "C".
        (Scalar::Text(x), Scalar::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Scalar::Int(x), Scalar::Int(y)) => Some(x.cmp(y)),
        (Scalar::Int(x), Scalar::Float(y)) => (*x as f64).partial_cmp(y),
        (Scalar::Float(x), Scalar::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Scalar::Float(x), Scalar::Float(y)) => x.partial_cmp(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        (Scalar::Date(x), Scalar::Date(y)) => Some(x.cmp(y)),
        (Scalar::DateTime(x), Scalar::DateTime(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(a: &Scalar, b: &Scalar) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

fn like(slot: &Scalar, pattern: &str, op: Op) -> bool {
    match slot {
        Scalar::Text(s) => like_match(s, pattern, op.is_case_insensitive()),
        _ => false,
    }
}

impl Operand {
    /// Whether a value (`None` = NULL) satisfies `value op self`, with Odoo's NULL rules (see the
    /// module documentation of [`crate::filter`]).
    pub fn test(&self, op: Op, slot: Option<&Scalar>) -> bool {
        match (op, self) {
            (Op::Eq, Operand::Unset) => slot.is_none(),
            (Op::Ne, Operand::Unset) => slot.is_some(),
            (Op::Eq, Operand::Scalar(v)) => slot.is_some_and(|s| equal(s, v)),
            (Op::Ne, Operand::Scalar(v)) => slot.is_none_or(|s| !equal(s, v)),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(v)) => {
                slot.and_then(|s| compare(s, v)).is_some_and(|o| match op {
                    Op::Lt => o.is_lt(),
                    Op::Le => o.is_le(),
                    Op::Gt => o.is_gt(),
                    _ => o.is_ge(),
                })
            }
            // Odoo: an empty `like` value matches every row, NULL included.
            (Op::Like | Op::ILike, Operand::Pattern(p)) => {
                p.is_empty() || slot.is_some_and(|s| like(s, &format!("%{p}%"), op))
            }
            (Op::NotLike | Op::NotILike, Operand::Pattern(p)) => {
                !p.is_empty() && slot.is_none_or(|s| !like(s, &format!("%{p}%"), op))
            }
            (Op::EqLike | Op::EqILike, Operand::Pattern(p)) => slot.is_some_and(|s| like(s, p, op)),
            (Op::In, Operand::List { values, unset }) => match slot {
                Some(s) => values.iter().any(|v| equal(s, v)),
                None => *unset,
            },
            (Op::NotIn, Operand::List { values, unset }) => match slot {
                Some(s) => !values.iter().any(|v| equal(s, v)),
                None => !*unset,
            },
            // The parser never pairs these; match nothing.
            _ => false,
        }
    }

    /// The whole-leaf negation used for operators without an opposite (SQL `NOT`): for
    /// `=like`/`=ilike` it never matches NULL (`NOT NULL` is NULL in SQL).
    pub fn test_negated(&self, op: Op, slot: Option<&Scalar>) -> bool {
        match op {
            Op::EqLike | Op::EqILike => slot.is_some() && !self.test(op, slot),
            _ => !self.test(op, slot),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Any,
    One,
    Lit(char),
}

/// SQL `LIKE`: `%` any run, `_` one character, `\` escapes the next character (PostgreSQL's
/// default escape, given to SQLite as `ESCAPE '\'`). `case_insensitive` folds ASCII letters only,
/// as SQLite's `lower()` does.
pub fn like_match(value: &str, pattern: &str, case_insensitive: bool) -> bool {
    let fold = |c: char| {
        if case_insensitive {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Lit(fold(chars.next().unwrap_or('\\'))),
            c => Tok::Lit(fold(c)),
        });
    }
    let s: Vec<char> = value.chars().map(fold).collect();
    // Greedy matching with backtracking to the last `%`: O(len(s) * len(pattern)).
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(j) {
            Some(Tok::One) => {
                i += 1;
                j += 1;
            }
            Some(Tok::Lit(c)) if *c == s[i] => {
                i += 1;
                j += 1;
            }
            Some(Tok::Any) => {
                star = Some((j, i));
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[j.min(toks.len())..].iter().all(|t| *t == Tok::Any)
}
