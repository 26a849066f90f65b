//! The registry filter language: OpenG2P registry filters are Odoo domains written as JSON, e.g.
//! `[["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],"!",["reg_ids.id_type","=like","MOSIP UIN TOKEN"]]`.
//! This module owns parsing ("parse once": a [`Domain`] is always valid), the JSON form, and the
//! in-memory evaluator ([`Domain::matches`]). It must not build SQL: `g2p_store::filter_sql`
//! compiles the same AST with exactly the same semantics, and a property test checks that both
//! agree on SQLite and PostgreSQL.
//!
//! # Syntax (Odoo 17 `expression.py`)
//! A domain is an array of terms in Polish notation: leaves `[field, operator, value]`, the
//! constant leaves `[1,"=",1]` (true) and `[0,"=",1]` (false), and the prefix operators `"&"`,
//! `"|"` (two operands) and `"!"` (one). Top-level terms not consumed by an operator are ANDed;
//! `[]` matches everything. Operators are case-insensitive, `<>` means `!=` and `==` means `=`.
//! Limits: [`MAX_TERMS`] terms, [`MAX_DEPTH`] levels of nesting (after flattening `&`/`|`
//! chains) and [`MAX_VALUES`] list values, so a hostile filter cannot exhaust the stack or the
//! bind-parameter budget. Parsing is iterative.
//!
//! # Semantics (Odoo 17, with the registry's choices where Odoo had none)
//! * "Unset": `false` or `null` as a value means the field is unset (SQL NULL): `= false` is
//!   `IS NULL`, `!= false` is `IS NOT NULL`. Boolean columns are NOT NULL, so there `false` is the
//!   value false (`null` too). On `attributes.*`, `false` is the JSON boolean and only `null`
//!   means unset (an attribute may legitimately hold `false`).
//! * NULLs, as Odoo writes the SQL: `!= v`, `not in`, `not like`, `not ilike` also match unset
//!   values; `=`, `<`, `<=`, `>`, `>=`, `like`, `ilike`, `=like`, `=ilike` never do; `in` matches
//!   unset values only when its list contains `false`, and `not in` with `false` in the list
//!   excludes them. Empty `in` matches nothing, empty `not in` everything.
//! * `like`/`ilike`/`not like`/`not ilike` wrap the value as `%value%` without escaping it (like
//!   Odoo); `=like`/`=ilike` use the value as the pattern. `%` and `_` are wildcards and `\`
//!   escapes the next character (PostgreSQL's default, which Odoo inherits; SQLite is given
//!   `ESCAPE '\'`). A `=like` pattern ending in a lone `\` is rejected (PostgreSQL would fail).
//!   Odoo quirk kept: `like ""`/`ilike ""` match every row, unset ones included, and
//!   `not like ""` matches none.
//! * Case: `like` is case-sensitive. `ilike` folds ASCII letters only (SQLite's `lower()` does
//!   not fold other letters; PostgreSQL's `ILIKE` does, so non-ASCII case-insensitive matches
//!   may differ between backends).
//! * Ordering of text is by bytes (code points): PostgreSQL comparisons use `COLLATE "C"`.
//! * `!` follows Odoo's `distribute_not`: it is pushed through `&`/`|` (De Morgan); on a leaf
//!   whose operator has an opposite (`=`/`!=`, `<`/`>=`, `>`/`<=`, `in`/`not in`,
//!   `like`/`not like`, `ilike`/`not ilike`) the operator is flipped, so `!` of `[f,"<",v]` does
//!   not match unset `f`, while `!` of `[f,"=",v]` does. `=like`/`=ilike` have no opposite: their
//!   negation is SQL `NOT`, which never matches unset values. A path through `reg_ids` is
//!   negated as a whole (`NOT EXISTS`).
//! * `reg_ids.<x>`: Odoo's one2many path semantics, "some ID of the registrant satisfies
//!   `x op v`", also for negative operators (`[reg_ids.id_type,"!=","MOSIP VID"]` = has an ID of
//!   another type). `reg_ids.id_type` compares the ID type's name. Bare `reg_ids` accepts only
//!   `= false` (has no ID) and `!= false` (has an ID).
//! * `is_registrant` is constant true: every row of the table is a registrant.
//! * `attributes.<key>` (key `[A-Za-z0-9_]+`): the JSON value is compared with the filter value's
//!   JSON type: a string as text, a number as a number, a boolean as a boolean. An attribute that
//!   is missing, `null`, or of another JSON type (array and object included) is treated exactly
//!   like an unset column for that leaf: positive operators do not match it, `!=`, `not in` and
//!   `not like` do. With no typed value (`= null`, `!= null`, `in [null]`), "unset" means missing
//!   or `null`. Ordering and `like` need a string or number (`like`: string) value.
//! * Dates are `YYYY-MM-DD` (years 1–9999). Datetimes are `YYYY-MM-DD HH:MM:SS[.ffffff]`,
//!   RFC 3339, or a date (midnight UTC), read as UTC and truncated to microseconds (PostgreSQL's
//!   precision).
//! * A value of the wrong type for the field or operator is an error, e.g. a list with `=` (use
//!   `in`), a number for a text field, `like` on a date.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use serde_json::Value;

/// Most terms a domain may have (leaves and operators).
pub const MAX_TERMS: usize = 1000;
/// Deepest nesting of `&`, `|` and `!` (after flattening chains of the same operator).
pub const MAX_DEPTH: usize = 100;
/// Most values all `in`/`not in` lists of one domain may hold together.
pub const MAX_VALUES: usize = 10_000;

/// Which element of a leaf an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Field,
    Operator,
    Value,
}

impl Element {
    pub fn as_str(self) -> &'static str {
        match self {
            Element::Field => "field",
            Element::Operator => "operator",
            Element::Value => "value",
        }
    }
}

/// Why a filter was rejected, and where: the 0-based index of the term in the top-level array
/// and, for a leaf, which of its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    position: Option<usize>,
    element: Option<Element>,
    message: String,
}

impl FilterError {
    pub(crate) fn whole(message: impl Into<String>) -> Self {
        FilterError {
            position: None,
            element: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position: Some(position),
            element: None,
            message: message.into(),
        }
    }

    pub(crate) fn in_leaf(position: usize, element: Element, message: impl Into<String>) -> Self {
        FilterError {
            position: Some(position),
            element: Some(element),
            message: message.into(),
        }
    }

    /// Index of the offending term in the top-level array, when the error is about one term.
    pub fn position(&self) -> Option<usize> {
        self.position
    }

    /// The leaf element (field, operator or value) the error is about, when it is about one.
    pub fn element(&self) -> Option<Element> {
        self.element
    }

    /// The message without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "term {p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FilterError {}

/// The type of a column as the filter language sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Date,
    DateTime,
    Int,
    Bool,
}

/// A column of `registrants` that filters may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Id,
    Name,
    GivenName,
    FamilyName,
    AddlName,
    Gender,
    BirthPlace,
    Address,
    Phone,
    Email,
    DisabledReason,
    GroupKind,
    ExternalKey,
    Birthdate,
    RegistrationDate,
    CreatedAt,
    UpdatedAt,
    IsGroup,
    Disabled,
    BirthdateNotExact,
}

impl Column {
    pub const ALL: [Column; 20] = [
        Column::Id,
        Column::Name,
        Column::GivenName,
        Column::FamilyName,
        Column::AddlName,
        Column::Gender,
        Column::BirthPlace,
        Column::Address,
        Column::Phone,
        Column::Email,
        Column::DisabledReason,
        Column::GroupKind,
        Column::ExternalKey,
        Column::Birthdate,
        Column::RegistrationDate,
        Column::CreatedAt,
        Column::UpdatedAt,
        Column::IsGroup,
        Column::Disabled,
        Column::BirthdateNotExact,
    ];

    /// The name filters use (Odoo's where it differs from the column).
    pub fn name(self) -> &'static str {
        match self {
            Column::CreatedAt => "create_date",
            Column::UpdatedAt => "write_date",
            c => c.sql_column(),
        }
    }

    /// The column of `registrants`; a fixed identifier, safe to put in SQL text.
    pub fn sql_column(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Name => "name",
            Column::GivenName => "given_name",
            Column::FamilyName => "family_name",
            Column::AddlName => "addl_name",
            Column::Gender => "gender",
            Column::BirthPlace => "birth_place",
            Column::Address => "address",
            Column::Phone => "phone",
            Column::Email => "email",
            Column::DisabledReason => "disabled_reason",
            Column::GroupKind => "group_kind",
            Column::ExternalKey => "external_key",
            Column::Birthdate => "birthdate",
            Column::RegistrationDate => "registration_date",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::IsGroup => "is_group",
            Column::Disabled => "disabled",
            Column::BirthdateNotExact => "birthdate_not_exact",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Column::Id => Kind::Int,
            Column::Birthdate | Column::RegistrationDate => Kind::Date,
            Column::CreatedAt | Column::UpdatedAt => Kind::DateTime,
            Column::IsGroup | Column::Disabled | Column::BirthdateNotExact => Kind::Bool,
            _ => Kind::Text,
        }
    }

    /// Whether the column may be NULL (mirrors the schema and [`crate::Registrant`]).
    pub fn nullable(self) -> bool {
        !matches!(
            self,
            Column::Id
                | Column::Name
                | Column::CreatedAt
                | Column::UpdatedAt
                | Column::IsGroup
                | Column::Disabled
                | Column::BirthdateNotExact
        )
    }
}

/// A field of a registrant's typed IDs, reached as `reg_ids.<field>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegIdField {
    /// The ID type's name (`id_types.name`).
    IdType,
    Value,
    Status,
    ExpiryDate,
    Description,
}

impl RegIdField {
    pub const ALL: [RegIdField; 5] = [
        RegIdField::IdType,
        RegIdField::Value,
        RegIdField::Status,
        RegIdField::ExpiryDate,
        RegIdField::Description,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RegIdField::IdType => "id_type",
            RegIdField::Value => "value",
            RegIdField::Status => "status",
            RegIdField::ExpiryDate => "expiry_date",
            RegIdField::Description => "description",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            RegIdField::ExpiryDate => Kind::Date,
            _ => Kind::Text,
        }
    }

    pub fn nullable(self) -> bool {
        matches!(self, RegIdField::ExpiryDate | RegIdField::Description)
    }
}

/// A validated `attributes` key: `[A-Za-z0-9_]{1,100}`. Only the parser creates one, so the SQL
/// compiler may put it in a JSON path literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrKey(String);

impl AttrKey {
    pub fn parse(key: &str) -> Option<Self> {
        let ok = !key.is_empty()
            && key.len() <= 100
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then(|| AttrKey(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a leaf's left-hand side names.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Column(Column),
    /// Constant true.
    IsRegistrant,
    /// Bare `reg_ids`: only `= false` / `!= false`.
    RegIds,
    /// `reg_ids.<field>`: "some ID satisfies".
    RegId(RegIdField),
    /// `attributes.<key>`.
    Attribute(AttrKey),
}

impl Field {
    /// The canonical name, as [`Domain::to_json`] writes it.
    pub fn name(&self) -> String {
        match self {
            Field::Column(c) => c.name().to_owned(),
            Field::IsRegistrant => "is_registrant".to_owned(),
            Field::RegIds => "reg_ids".to_owned(),
            Field::RegId(f) => format!("reg_ids.{}", f.name()),
            Field::Attribute(k) => format!("attributes.{}", k.as_str()),
        }
    }

    /// Whether `!` on this leaf is a whole-leaf negation (Odoo: a path through a relation).
    pub fn is_relation_path(&self) -> bool {
        matches!(self, Field::RegId(_))
    }
}

/// Leaf operators, after Odoo's normalisation (`<>` → `!=`, `==` → `=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    NotLike,
    ILike,
    NotILike,
    EqLike,
    EqILike,
    In,
    NotIn,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Like,
        Op::NotLike,
        Op::ILike,
        Op::NotILike,
        Op::EqLike,
        Op::EqILike,
        Op::In,
        Op::NotIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "like",
            Op::NotLike => "not like",
            Op::ILike => "ilike",
            Op::NotILike => "not ilike",
            Op::EqLike => "=like",
            Op::EqILike => "=ilike",
            Op::In => "in",
            Op::NotIn => "not in",
        }
    }

    /// Parses an operator, case-insensitively, with Odoo's synonyms.
    pub fn parse(s: &str) -> Option<Op> {
        let op = match s.to_ascii_lowercase().as_str() {
            "=" | "==" => Op::Eq,
            "!=" | "<>" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "like" => Op::Like,
            "not like" => Op::NotLike,
            "ilike" => Op::ILike,
            "not ilike" => Op::NotILike,
            "=like" => Op::EqLike,
            "=ilike" => Op::EqILike,
            "in" => Op::In,
            "not in" => Op::NotIn,
            _ => return None,
        };
        Some(op)
    }

    /// Odoo's `TERM_OPERATORS_NEGATION`: the operator `!` turns this one into, if any.
    pub fn opposite(self) -> Option<Op> {
        Some(match self {
            Op::Eq => Op::Ne,
            Op::Ne => Op::Eq,
            Op::Lt => Op::Ge,
            Op::Ge => Op::Lt,
            Op::Gt => Op::Le,
            Op::Le => Op::Gt,
            Op::In => Op::NotIn,
            Op::NotIn => Op::In,
            Op::Like => Op::NotLike,
            Op::NotLike => Op::Like,
            Op::ILike => Op::NotILike,
            Op::NotILike => Op::ILike,
            Op::EqLike | Op::EqILike => return None,
        })
    }

    pub fn is_case_insensitive(self) -> bool {
        matches!(self, Op::ILike | Op::NotILike | Op::EqILike)
    }
}

/// A typed value from a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Int(i64),
    /// Only from `attributes` filters (JSON numbers that are not integers).
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    /// Truncated to microseconds.
    DateTime(DateTime<Utc>),
}

impl Scalar {
    fn to_json(&self) -> Value {
        match self {
            Scalar::Text(s) => Value::String(s.clone()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => Value::from(*f),
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Scalar::DateTime(t) => {
                let fmt = if t.nanosecond() == 0 {
                    "%Y-%m-%d %H:%M:%S"
                } else {
                    "%Y-%m-%d %H:%M:%S%.6f"
                };
                Value::String(t.format(fmt).to_string())
            }
        }
    }
}

/// The JSON type an `attributes` leaf compares with (from its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    Text,
    Number,
    Bool,
    /// No typed value (`= null`, `in [null]`): only presence matters.
    Any,
}

impl AttrType {
    fn of(s: &Scalar) -> AttrType {
        match s {
            Scalar::Int(_) | Scalar::Float(_) => AttrType::Number,
            Scalar::Bool(_) => AttrType::Bool,
            _ => AttrType::Text,
        }
    }
}

/// The right-hand side of a leaf, shaped by its operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `false`/`null` with `=` or `!=`: the field is unset.
    Unset,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Scalar(Scalar),
    /// The raw value of a `like` family operator (not yet wrapped in `%`).
    Pattern(String),
    /// `in` / `not in`; `unset` when the list contained `false` (or `null`).
    List { values: Vec<Scalar>, unset: bool },
}

/// One validated `[field, operator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    field: Field,
    op: Op,
    operand: Operand,
}

impl Leaf {
    pub fn field(&self) -> &Field {
        &self.field
    }

    pub fn op(&self) -> Op {
        self.op
    }

    pub fn operand(&self) -> &Operand {
        &self.operand
    }

    /// The operator `!` turns this leaf into, following Odoo's `distribute_not`; `None` when the
    /// negation is of the whole leaf (`=like`/`=ilike`, and paths through `reg_ids`).
    pub fn negated_op(&self) -> Option<Op> {
        if self.field.is_relation_path() {
            None
        } else {
            self.op.opposite()
        }
    }

    /// For `attributes` leaves: the JSON type the value is compared as.
    pub fn attr_type(&self) -> AttrType {
        match &self.operand {
            Operand::Unset => AttrType::Any,
            Operand::Pattern(_) => AttrType::Text,
            Operand::Scalar(s) => AttrType::of(s),
            Operand::List { values, .. } => values.first().map_or(AttrType::Any, AttrType::of),
        }
    }

    fn to_json(&self) -> Value {
        let value = match &self.operand {
            Operand::Unset => self.unset_json(),
            Operand::Scalar(s) => s.to_json(),
            Operand::Pattern(p) => Value::String(p.clone()),
            Operand::List { values, unset } => {
                let mut v: Vec<Value> = values.iter().map(Scalar::to_json).collect();
                if *unset {
                    v.push(self.unset_json());
                }
                Value::Array(v)
            }
        };
        Value::Array(vec![
            Value::String(self.field.name()),
            Value::String(self.op.as_str().to_owned()),
            value,
        ])
    }

    fn unset_json(&self) -> Value {
        match self.field {
            Field::Attribute(_) => Value::Null,
            _ => Value::Bool(false),
        }
    }
}

/// A parsed domain as a tree. `And`/`Or` chains are flattened; the parser never produces an
/// `And` or `Or` with fewer than two children, except the empty `And` of [`Domain::match_all`].
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Const(bool),
    Leaf(Leaf),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn and(a: Node, b: Node) -> Node {
        let mut v = Vec::new();
        for n in [a, b] {
            match n {
                Node::And(xs) => v.extend(xs),
                n => v.push(n),
            }
        }
        if v.len() == 1 {
            v.pop().unwrap_or(Node::And(Vec::new()))
        } else {
            Node::And(v)
        }
    }

    fn or(a: Node, b: Node) -> Node {
        let mut v = Vec::new();
        for n in [a, b] {
            match n {
                Node::Or(xs) => v.extend(xs),
                n => v.push(n),
            }
        }
        Node::Or(v)
    }

    /// Writes the node in Polish notation.
    fn write_json(&self, out: &mut Vec<Value>) {
        match self {
            Node::Const(true) => out.push(serde_json::json!([1, "=", 1])),
            Node::Const(false) => out.push(serde_json::json!([0, "=", 1])),
            Node::Leaf(l) => out.push(l.to_json()),
            Node::Not(x) => {
                out.push(Value::String("!".to_owned()));
                x.write_json(out);
            }
            Node::And(xs) | Node::Or(xs) => {
                let (op, empty) = match self {
                    Node::And(_) => ("&", true),
                    _ => ("|", false),
                };
                if xs.is_empty() {
                    Node::Const(empty).write_json(out);
                    return;
                }
                for _ in 1..xs.len() {
                    out.push(Value::String(op.to_owned()));
                }
                for x in xs {
                    x.write_json(out);
                }
            }
        }
    }
}

/// A validated registry filter. Build it with [`Domain::parse_str`] or [`Domain::from_json`];
/// [`Domain::to_json`] gives back an equivalent domain that parses to an equal value.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    root: Node,
}

impl Default for Domain {
    fn default() -> Self {
        Domain::match_all()
    }
}

impl Domain {
    /// `[]`: every registrant.
    pub fn match_all() -> Self {
        Domain {
            root: Node::And(Vec::new()),
        }
    }

    /// Parses a domain from JSON text.
    pub fn parse_str(s: &str) -> Result<Self, FilterError> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| FilterError::whole(format!("the filter is not valid JSON: {e}")))?;
        Self::from_json(&v)
    }

    /// Parses a domain from a JSON value.
    pub fn from_json(v: &Value) -> Result<Self, FilterError> {
        parse::parse(v).map(|root| Domain { root })
    }

    /// The domain as Odoo writes it (implicit `&` at the top level).
    pub fn to_json(&self) -> Value {
        let mut out = Vec::new();
        match &self.root {
            Node::And(xs) => {
                for x in xs {
                    x.write_json(&mut out);
                }
            }
            n => n.write_json(&mut out),
        }
        Value::Array(out)
    }

    /// Both domains must hold.
    pub fn and(self, other: Domain) -> Domain {
        Domain {
            root: Node::and(self.root, other.root),
        }
    }

    /// The tree, for compilers (see `g2p_store::filter_sql`).
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Whether the domain is `[]`.
    pub fn is_match_all(&self) -> bool {
        matches!(&self.root, Node::And(xs) if xs.is_empty())
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

/// Serialises as the JSON domain.
impl serde::Serialize for Domain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Deserialises and validates a JSON domain, so request bodies hold a parsed filter.
impl<'de> serde::Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Domain::from_json(&v).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&Value> for Domain {
    type Error = FilterError;

    fn try_from(v: &Value) -> Result<Self, Self::Error> {
        Domain::from_json(v)
    }
}

impl std::str::FromStr for Domain {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse_str(s)
    }
}

pub use eval::like_match;
