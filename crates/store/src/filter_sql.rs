//! Compiles a registry filter ([`g2p_domain::filter::Domain`]) to a boolean SQL expression over
//! `registrants r`, for SQLite or PostgreSQL, with exactly the semantics of the in-memory
//! evaluator [`Domain::matches`] (a property test, `tests/filter_prop.rs`, runs random domains on
//! both backends against it). The semantics themselves are documented in `g2p_domain::filter`.
//!
//! Rules this module keeps:
//! * Values are bind parameters (`$first_param`, `$first_param+1`, … in the order of the returned
//!   vector), never SQL text. Only fixed identifiers (columns from [`Column::sql_column`]) and
//!   validated attribute keys (`[A-Za-z0-9_]+`, checked by the parser and again here) appear in
//!   the SQL.
//! * The expression is two-valued: it never evaluates to NULL (each comparison on a nullable
//!   value is guarded by a presence test), so a caller may also negate it.
//! * `!` is pushed down to the leaves as the evaluator does (Odoo's `distribute_not`).
//! * LIKE uses `ESCAPE '\'` on both backends (PostgreSQL's default); `ilike` is `ILIKE` on
//!   PostgreSQL and `lower(x) LIKE lower($n)` on SQLite (ASCII folding; connections run with
//!   `PRAGMA case_sensitive_like=ON`). Text ordering uses `COLLATE "C"` on PostgreSQL so that both
//!   backends order by bytes.
//! * Datetimes are bound as [`SqlValue::DateTime`]: on SQLite sqlx encodes it as the same text it
//!   writes for `DateTime<Utc>` columns, so the text comparison orders like the instants. This
//!   assumes timestamps are written through sqlx from `chrono::DateTime<Utc>`.
//! * `attributes.<key>`: on PostgreSQL `r.attributes->'key'` with `jsonb_typeof`, casts to
//!   numeric/boolean only inside `CASE WHEN jsonb_typeof(..) = ..` so they cannot fail; on SQLite
//!   `json_type`/`json_extract` with the path `'$."key"'`.
//! * `reg_ids.<x>` compiles to `EXISTS (SELECT 1 FROM reg_ids ri … WHERE ri.registrant_id = r.id
//!   AND …)`, joining `id_types t` only for `reg_ids.id_type`; an exact type name (`=`, or
//!   `=like` without wildcards) becomes `ri.id_type_id IN (SELECT id FROM id_types WHERE name =
//!   $n)` so PostgreSQL can use the `(id_type_id, value)` index.

use g2p_domain::filter::{
    AttrType, Column, Domain, Field, Kind, Leaf, Node, Op, Operand, RegIdField, Scalar,
};

use crate::{Backend, SqlValue};

const TRUE: &str = "(1=1)";
const FALSE: &str = "(1=0)";

/// Compiles `domain` to a boolean expression over alias `r` (table `registrants`) and the values
/// to bind, numbered from `$first_param`.
pub fn compile(domain: &Domain, backend: Backend, first_param: usize) -> (String, Vec<SqlValue>) {
    let mut c = Compiler {
        backend,
        next: first_param,
        params: Vec::new(),
    };
    let sql = c.node(domain.root(), false);
    (sql, c.params)
}

fn bool_sql(b: bool) -> String {
    if b { TRUE } else { FALSE }.to_owned()
}

fn to_sql_value(s: &Scalar) -> SqlValue {
    match s {
        Scalar::Text(t) => SqlValue::Text(t.clone()),
        Scalar::Int(i) => SqlValue::Int(*i),
        Scalar::Float(f) => SqlValue::Float(*f),
        Scalar::Bool(b) => SqlValue::Bool(*b),
        Scalar::Date(d) => SqlValue::Date(*d),
        Scalar::DateTime(t) => SqlValue::DateTime(*t),
    }
}

/// How one leaf reads its value in SQL.
struct Slot {
    /// The value; only evaluated where `present` holds, so it may be NULL otherwise.
    value: String,
    /// A two-valued test that the value is set (and, for attributes, of the leaf's JSON type);
    /// `None` when it always is.
    present: Option<String>,
    /// Text: ordered with `COLLATE "C"` on PostgreSQL.
    text: bool,
    /// PostgreSQL numeric: parameters are cast to numeric.
    numeric: bool,
}

impl Slot {
    fn guard(&self, x: String) -> String {
        match &self.present {
            Some(p) => format!("({p} AND {x})"),
            None => format!("({x})"),
        }
    }

    fn or_unset(&self, x: String) -> String {
        match &self.present {
            Some(p) => format!("(NOT {p} OR {x})"),
            None => format!("({x})"),
        }
    }

    fn unset(&self) -> String {
        match &self.present {
            Some(p) => format!("(NOT {p})"),
            None => FALSE.to_owned(),
        }
    }

    fn set(&self) -> String {
        match &self.present {
            Some(p) => p.clone(),
            None => TRUE.to_owned(),
        }
    }
}

struct Compiler {
    backend: Backend,
    next: usize,
    params: Vec<SqlValue>,
}

impl Compiler {
    fn param(&mut self, v: SqlValue) -> String {
        let p = format!("${}", self.next);
        self.next += 1;
        self.params.push(v);
        p
    }

    fn value_param(&mut self, slot: &Slot, s: &Scalar) -> String {
        let p = self.param(to_sql_value(s));
        if slot.numeric {
            format!("CAST({p} AS numeric)")
        } else {
            p
        }
    }

    /// `neg` carries a pending `!` down the tree, as Odoo's `distribute_not` does.
    fn node(&mut self, n: &Node, neg: bool) -> String {
        match n {
            Node::Const(b) => bool_sql(*b != neg),
            Node::Not(x) => self.node(x, !neg),
            Node::And(xs) => self.join(xs, neg, !neg),
            Node::Or(xs) => self.join(xs, neg, neg),
            Node::Leaf(l) if !neg => self.leaf(l, l.op(), false),
            Node::Leaf(l) => match l.negated_op() {
                Some(op) => self.leaf(l, op, false),
                None => self.leaf(l, l.op(), true),
            },
        }
    }

    fn join(&mut self, xs: &[Node], neg: bool, conjunction: bool) -> String {
        let mut parts: Vec<String> = xs.iter().map(|x| self.node(x, neg)).collect();
        match parts.len() {
            0 => bool_sql(conjunction),
            1 => parts.pop().unwrap_or_else(|| bool_sql(conjunction)),
            _ => format!(
                "({})",
                parts.join(if conjunction { " AND " } else { " OR " })
            ),
        }
    }

    fn leaf(&mut self, l: &Leaf, op: Op, whole_negated: bool) -> String {
        match l.field() {
            Field::IsRegistrant => {
                // Constant: fold it with the evaluator's own rule.
                let slot = Some(Scalar::Bool(true));
                bool_sql(if whole_negated {
                    l.operand().test_negated(op, slot.as_ref())
                } else {
                    l.operand().test(op, slot.as_ref())
                })
            }
            Field::RegIds => {
                let slot = Slot {
                    value: TRUE.to_owned(),
                    present: Some(
                        "EXISTS (SELECT 1 FROM reg_ids ri WHERE ri.registrant_id = r.id)"
                            .to_owned(),
                    ),
                    text: false,
                    numeric: false,
                };
                self.slot_op(&slot, op, l.operand(), whole_negated)
            }
            Field::RegId(f) => {
                let (join, cond) = self.reg_id_condition(*f, op, l.operand());
                let exists = format!(
                    "EXISTS (SELECT 1 FROM reg_ids ri{join} WHERE ri.registrant_id = r.id AND {cond})"
                );
                if whole_negated {
                    format!("(NOT {exists})")
                } else {
                    exists
                }
            }
            Field::Column(c) => {
                let slot = column_slot(*c);
                self.slot_op(&slot, op, l.operand(), whole_negated)
            }
            Field::Attribute(key) => {
                let key = key.as_str();
                // The parser validated the key; never put anything else in SQL text.
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return FALSE.to_owned();
                }
                let slot = self.attribute_slot(key, l.attr_type());
                self.slot_op(&slot, op, l.operand(), whole_negated)
            }
        }
    }

    /// The join and the condition on `ri` (and `t`) for `reg_ids.<f> op operand`.
    fn reg_id_condition(
        &mut self,
        f: RegIdField,
        op: Op,
        operand: &Operand,
    ) -> (&'static str, String) {
        if f == RegIdField::IdType {
            let exact = match (op, operand) {
                (Op::Eq, Operand::Scalar(Scalar::Text(name))) => Some(name),
                (Op::EqLike, Operand::Pattern(p)) if !p.contains(['%', '_', '\\']) => Some(p),
                _ => None,
            };
            if let Some(name) = exact {
                let p = self.param(SqlValue::Text(name.clone()));
                return (
                    "",
                    format!("ri.id_type_id IN (SELECT id FROM id_types WHERE name = {p})"),
                );
            }
        }
        let (join, column) = match f {
            RegIdField::IdType => (" JOIN id_types t ON t.id = ri.id_type_id", "t.name"),
            RegIdField::Value => ("", "ri.value"),
            RegIdField::Status => ("", "ri.status"),
            RegIdField::ExpiryDate => ("", "ri.expiry_date"),
            RegIdField::Description => ("", "ri.description"),
        };
        let slot = Slot {
            value: column.to_owned(),
            present: f.nullable().then(|| format!("({column} IS NOT NULL)")),
            text: f.kind() == Kind::Text,
            numeric: false,
        };
        (join, self.slot_op(&slot, op, operand, false))
    }

    fn attribute_slot(&self, key: &str, t: AttrType) -> Slot {
        match self.backend {
            Backend::Sqlite => {
                let path = format!("'$.\"{key}\"'");
                let typ = format!("COALESCE(json_type(r.attributes, {path}), 'null')");
                let present = match t {
                    AttrType::Text => format!("({typ} = 'text')"),
                    AttrType::Number => format!("({typ} IN ('integer', 'real'))"),
                    AttrType::Bool => format!("({typ} IN ('true', 'false'))"),
                    AttrType::Any => format!("({typ} <> 'null')"),
                };
                Slot {
                    value: format!("json_extract(r.attributes, {path})"),
                    present: Some(present),
                    text: t == AttrType::Text,
                    numeric: false,
                }
            }
            Backend::Postgres => {
                let typ = format!("jsonb_typeof(r.attributes->'{key}')");
                let text = format!("(r.attributes->>'{key}')");
                let (json_type, value) = match t {
                    AttrType::Text => ("string", text),
                    AttrType::Number => (
                        "number",
                        format!("(CASE WHEN {typ} = 'number' THEN {text}::numeric END)"),
                    ),
                    AttrType::Bool => (
                        "boolean",
                        format!("(CASE WHEN {typ} = 'boolean' THEN {text}::boolean END)"),
                    ),
                    AttrType::Any => ("", "NULL".to_owned()),
                };
                let present = if json_type.is_empty() {
                    format!("(COALESCE({typ}, 'null') <> 'null')")
                } else {
                    format!("(COALESCE({typ}, 'null') = '{json_type}')")
                };
                Slot {
                    value,
                    present: Some(present),
                    text: t == AttrType::Text,
                    numeric: t == AttrType::Number,
                }
            }
        }
    }

    /// `slot op operand`, positive or (for operators without an opposite) negated as a whole.
    /// Mirrors `Operand::test` / `Operand::test_negated` in the domain crate.
    fn slot_op(&mut self, slot: &Slot, op: Op, operand: &Operand, whole_negated: bool) -> String {
        if whole_negated {
            return match (op, operand) {
                // SQL NOT of a LIKE: never true where the value is unset.
                (Op::EqLike | Op::EqILike, Operand::Pattern(p)) => {
                    let like = self.like(slot, op, p.clone());
                    slot.guard(format!("NOT {like}"))
                }
                _ => format!("(NOT {})", self.slot_op(slot, op, operand, false)),
            };
        }
        match (op, operand) {
            (Op::Eq, Operand::Unset) => slot.unset(),
            (Op::Ne, Operand::Unset) => slot.set(),
            (Op::Eq, Operand::Scalar(v)) => {
                let p = self.value_param(slot, v);
                slot.guard(format!("{} = {p}", slot.value))
            }
            (Op::Ne, Operand::Scalar(v)) => {
                let p = self.value_param(slot, v);
                slot.or_unset(format!("{} <> {p}", slot.value))
            }
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::Scalar(v)) => {
                let sym = match op {
                    Op::Lt => "<",
                    Op::Le => "<=",
                    Op::Gt => ">",
                    _ => ">=",
                };
                let p = self.value_param(slot, v);
                let value = if slot.text && self.backend == Backend::Postgres {
                    format!("{} COLLATE \"C\"", slot.value)
                } else {
                    slot.value.clone()
                };
                slot.guard(format!("{value} {sym} {p}"))
            }
            // Odoo: an empty `like` value matches every row, NULL included.
            (Op::Like | Op::ILike, Operand::Pattern(p)) if p.is_empty() => TRUE.to_owned(),
            (Op::NotLike | Op::NotILike, Operand::Pattern(p)) if p.is_empty() => FALSE.to_owned(),
            (Op::Like | Op::ILike, Operand::Pattern(p)) => {
                let like = self.like(slot, op, format!("%{p}%"));
                slot.guard(like)
            }
            (Op::NotLike | Op::NotILike, Operand::Pattern(p)) => {
                let like = self.like(slot, op, format!("%{p}%"));
                slot.or_unset(format!("NOT {like}"))
            }
            (Op::EqLike | Op::EqILike, Operand::Pattern(p)) => {
                let like = self.like(slot, op, p.clone());
                slot.guard(like)
            }
            (Op::In, Operand::List { values, unset }) => {
                let mut parts = Vec::new();
                if !values.is_empty() {
                    let list = self.list(slot, values);
                    parts.push(slot.guard(format!("{} IN ({list})", slot.value)));
                }
                if *unset {
                    parts.push(slot.unset());
                }
                match parts.len() {
                    0 => FALSE.to_owned(),
                    1 => parts.pop().unwrap_or_else(|| FALSE.to_owned()),
                    _ => format!("({})", parts.join(" OR ")),
                }
            }
            (Op::NotIn, Operand::List { values, unset }) => {
                if values.is_empty() {
                    return if *unset { slot.set() } else { TRUE.to_owned() };
                }
                let list = self.list(slot, values);
                let not_in = format!("{} NOT IN ({list})", slot.value);
                if *unset {
                    slot.guard(not_in)
                } else {
                    slot.or_unset(not_in)
                }
            }
            // The parser never pairs these; match nothing, as the evaluator does.
            _ => FALSE.to_owned(),
        }
    }

    fn list(&mut self, slot: &Slot, values: &[Scalar]) -> String {
        let ps: Vec<String> = values.iter().map(|v| self.value_param(slot, v)).collect();
        ps.join(", ")
    }

    /// `value LIKE pattern`, parenthesised.
    fn like(&mut self, slot: &Slot, op: Op, pattern: String) -> String {
        let p = self.param(SqlValue::Text(pattern));
        let v = &slot.value;
        match (self.backend, op.is_case_insensitive()) {
            (Backend::Postgres, true) => format!("({v} ILIKE {p} ESCAPE '\\')"),
            (Backend::Sqlite, true) => format!("(lower({v}) LIKE lower({p}) ESCAPE '\\')"),
            (_, false) => format!("({v} LIKE {p} ESCAPE '\\')"),
        }
    }
}

fn column_slot(c: Column) -> Slot {
    let column = format!("r.{}", c.sql_column());
    Slot {
        present: c.nullable().then(|| format!("({column} IS NOT NULL)")),
        value: column,
        text: c.kind() == Kind::Text,
        numeric: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(s: &str, backend: Backend) -> (String, Vec<SqlValue>) {
        compile(&Domain::parse_str(s).unwrap(), backend, 3)
    }

    #[test]
    fn openg2p_default_domain() {
        let (q, p) = sql(
            r#"[["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],"!",["reg_ids.id_type","=like","MOSIP UIN TOKEN"]]"#,
            Backend::Postgres,
        );
        assert_eq!(
            q,
            "((1=1) AND EXISTS (SELECT 1 FROM reg_ids ri WHERE ri.registrant_id = r.id AND \
             ri.id_type_id IN (SELECT id FROM id_types WHERE name = $3)) AND (NOT EXISTS \
             (SELECT 1 FROM reg_ids ri WHERE ri.registrant_id = r.id AND ri.id_type_id IN \
             (SELECT id FROM id_types WHERE name = $4))))"
        );
        assert_eq!(
            p,
            vec![
                SqlValue::Text("MOSIP VID".into()),
                SqlValue::Text("MOSIP UIN TOKEN".into())
            ]
        );
    }

    #[test]
    fn values_are_parameters() {
        let hostile = "x'; DROP TABLE registrants; --";
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let d = serde_json::json!([
                ["name", "ilike", hostile],
                ["attributes.k", "=", hostile],
                ["reg_ids.id_type", "like", hostile]
            ]);
            let (q, p) = compile(&Domain::from_json(&d).unwrap(), backend, 1);
            assert!(!q.contains("DROP"), "{q}");
            assert_eq!(p.len(), 3);
            assert!(
                q.contains("$1") && q.contains("$3") && !q.contains("$4"),
                "{q}"
            );
        }
    }

    #[test]
    fn nullable_columns_are_guarded() {
        let (q, _) = sql(r#"[["gender","!=","f"]]"#, Backend::Sqlite);
        assert_eq!(q, "(NOT (r.gender IS NOT NULL) OR r.gender <> $3)");
        let (q, _) = sql(r#"[["name","<","b"]]"#, Backend::Postgres);
        assert_eq!(q, "(r.name COLLATE \"C\" < $3)");
        let (q, p) = sql(r#"[["name","in",[]]]"#, Backend::Postgres);
        assert_eq!((q.as_str(), p.len()), ("(1=0)", 0));
    }
}
