//! `$filter` and `$orderby` for the Submissions table: a backtracking parser for the part of
//! OData's expression grammar Central's parser (`odata-v4-parser`) accepts, the checks
//! Central then applies (`lib/data/odata-filter.js`: only the six system fields, only the
//! `year month day hour minute second now` functions), and SQL-like three-valued evaluation
//! with Central's null-safe `eq`/`ne`. Errors are the problem documents Central sends.

use std::cmp::Ordering;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

use super::http::Problem;
use super::json::Json;
use super::model::Submission;

/// The system fields that may be filtered and sorted on (`lib/data/submission.js`).
const FILTERABLE: &[&str] = &[
    "__id",
    "__system/submissionDate",
    "__system/updatedAt",
    "__system/submitterId",
    "__system/reviewState",
    "__system/deletedAt",
];

const ALLOWED_FUNCTIONS: &[&str] = &["year", "month", "day", "hour", "minute", "second", "now"];

/// OData's canonical functions with their arity (min, max); anything else does not parse.
const KNOWN_FUNCTIONS: &[(&str, usize, usize)] = &[
    ("contains", 2, 2),
    ("startswith", 2, 2),
    ("endswith", 2, 2),
    ("indexof", 2, 2),
    ("length", 1, 1),
    ("substring", 2, 3),
    ("tolower", 1, 1),
    ("toupper", 1, 1),
    ("trim", 1, 1),
    ("concat", 2, 2),
    ("year", 1, 1),
    ("month", 1, 1),
    ("day", 1, 1),
    ("hour", 1, 1),
    ("minute", 1, 1),
    ("second", 1, 1),
    ("fractionalseconds", 1, 1),
    ("totalseconds", 1, 1),
    ("date", 1, 1),
    ("time", 1, 1),
    ("totaloffsetminutes", 1, 1),
    ("now", 0, 0),
    ("maxdatetime", 0, 0),
    ("mindatetime", 0, 0),
    ("round", 1, 1),
    ("floor", 1, 1),
    ("ceiling", 1, 1),
    ("matchesPattern", 2, 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Time(DateTime<Utc>),
}

/// A parsed expression; `at`/`raw` locate it in the source for error documents.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    kind: Kind,
    at: usize,
    raw: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Member(String),
    Lit(Lit),
    Call(String, Vec<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// Arithmetic: parsed so that Central's 501.4 can name it, never evaluated.
    Arith(&'static str),
}

/// A validated `$filter`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses and validates a `$filter` value.
    pub(crate) fn parse(src: &str) -> Result<Self, Problem> {
        let p = Parser {
            s: src.as_bytes(),
            src,
        };
        let parsed = p.or_expr(0);
        let end = parsed.as_ref().map_or(0, |(_, e)| *e);
        let expr = match parsed {
            Some((expr, e)) if e == src.len() => expr,
            _ => {
                let reason = format!("Unexpected character at {end}");
                return Err(Problem::unparseable_filter(&reason));
            }
        };
        validate(&expr)?;
        Ok(Self { expr })
    }

    /// Whether the expression mentions `__system/deletedAt` (then deleted rows are not
    /// excluded by default: the clause decides).
    pub(crate) fn mentions_deleted_at(&self) -> bool {
        fn walk(e: &Expr) -> bool {
            match &e.kind {
                Kind::Member(m) => normalise(m) == "__system/deletedAt",
                Kind::Call(_, args) => args.iter().any(walk),
                Kind::Cmp(_, l, r) | Kind::And(l, r) | Kind::Or(l, r) => walk(l) || walk(r),
                Kind::Not(x) => walk(x),
                Kind::Lit(_) | Kind::Arith(_) => false,
            }
        }
        walk(&self.expr)
    }

    /// SQL `WHERE` semantics: a row matches only when the expression is true (not null).
    pub(crate) fn matches(&self, row: &Submission, now: DateTime<Utc>) -> bool {
        eval_bool(&self.expr, row, now) == Some(true)
    }
}

/// Strips the `$root/Submissions/` prefix subtables use.
fn normalise(member: &str) -> &str {
    member.strip_prefix("$root/Submissions/").unwrap_or(member)
}

fn validate(e: &Expr) -> Result<(), Problem> {
    match &e.kind {
        Kind::Member(m) => {
            if FILTERABLE.contains(&normalise(m)) {
                Ok(())
            } else {
                Err(Problem::unsupported_field(e.at, &e.raw))
            }
        }
        Kind::Lit(_) => Ok(()),
        Kind::Call(name, args) => {
            if ALLOWED_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) {
                args.iter().try_for_each(validate)
            } else {
                Err(Problem::unsupported_expression(
                    e.at,
                    "MethodCallExpression",
                    &e.raw,
                ))
            }
        }
        Kind::Cmp(_, l, r) | Kind::And(l, r) | Kind::Or(l, r) => {
            validate(l)?;
            validate(r)
        }
        Kind::Not(x) => validate(x),
        Kind::Arith(kind) => Err(Problem::unsupported_expression(e.at, kind, &e.raw)),
    }
}

// ------------------------------------------------------------------------------------------------
// Parser. Every rule takes a start offset and returns the node and its end offset, or None;
// callers backtrack, so an error is reported where the longest valid prefix ends, as
// odata-v4-parser reports "Unexpected character at N".

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
}

impl Parser<'_> {
    fn node(&self, kind: Kind, at: usize, end: usize) -> Expr {
        Expr {
            kind,
            at,
            raw: self.src.get(at..end).unwrap_or("").to_owned(),
        }
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.s.get(i).copied()
    }

    /// Required whitespace: at least one space or tab.
    fn rws(&self, pos: usize) -> Option<usize> {
        let end = self.bws(pos);
        (end > pos).then_some(end)
    }

    /// Optional whitespace.
    fn bws(&self, mut pos: usize) -> usize {
        while matches!(self.byte(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        pos
    }

    fn lit_at(&self, pos: usize, word: &str) -> bool {
        self.s
            .get(pos..pos + word.len())
            .is_some_and(|w| w == word.as_bytes())
    }

    /// `RWS word RWS`, returning the offset after the trailing whitespace.
    fn infix(&self, pos: usize, word: &str) -> Option<usize> {
        let p = self.rws(pos)?;
        if !self.lit_at(p, word) {
            return None;
        }
        self.rws(p + word.len())
    }

    fn or_expr(&self, pos: usize) -> Option<(Expr, usize)> {
        let (mut left, mut end) = self.and_expr(pos)?;
        while let Some(p) = self.infix(end, "or") {
            let Some((right, e)) = self.and_expr(p) else {
                break;
            };
            left = self.node(Kind::Or(Box::new(left), Box::new(right)), pos, e);
            end = e;
        }
        Some((left, end))
    }

    fn and_expr(&self, pos: usize) -> Option<(Expr, usize)> {
        let (mut left, mut end) = self.unary(pos)?;
        while let Some(p) = self.infix(end, "and") {
            let Some((right, e)) = self.unary(p) else {
                break;
            };
            left = self.node(Kind::And(Box::new(left), Box::new(right)), pos, e);
            end = e;
        }
        Some((left, end))
    }

    fn unary(&self, pos: usize) -> Option<(Expr, usize)> {
        if self.lit_at(pos, "not")
            && let Some(p) = self.rws(pos + 3)
            && let Some((inner, e)) = self.unary(p)
        {
            return Some((self.node(Kind::Not(Box::new(inner)), pos, e), e));
        }
        self.comparison(pos)
    }

    fn comparison(&self, pos: usize) -> Option<(Expr, usize)> {
        let (left, end) = self.additive(pos)?;
        const OPS: [(&str, CmpOp); 6] = [
            ("eq", CmpOp::Eq),
            ("ne", CmpOp::Ne),
            ("lt", CmpOp::Lt),
            ("le", CmpOp::Le),
            ("gt", CmpOp::Gt),
            ("ge", CmpOp::Ge),
        ];
        for (word, op) in OPS {
            if let Some(p) = self.infix(end, word)
                && let Some((right, e)) = self.additive(p)
            {
                return Some((
                    self.node(Kind::Cmp(op, Box::new(left), Box::new(right)), pos, e),
                    e,
                ));
            }
        }
        Some((left, end))
    }

    fn additive(&self, pos: usize) -> Option<(Expr, usize)> {
        let (mut left, mut end) = self.multiplicative(pos)?;
        loop {
            let mut next = None;
            for (word, kind) in [("add", "AddExpression"), ("sub", "SubExpression")] {
                if let Some(p) = self.infix(end, word)
                    && let Some((_, e)) = self.multiplicative(p)
                {
                    next = Some((kind, e));
                    break;
                }
            }
            let Some((kind, e)) = next else { break };
            left = self.node(Kind::Arith(kind), pos, e);
            end = e;
        }
        Some((left, end))
    }

    fn multiplicative(&self, pos: usize) -> Option<(Expr, usize)> {
        let (mut left, mut end) = self.primary(pos)?;
        loop {
            let mut next = None;
            for (word, kind) in [
                ("mul", "MulExpression"),
                ("divby", "DivByExpression"),
                ("div", "DivExpression"),
                ("mod", "ModExpression"),
            ] {
                if let Some(p) = self.infix(end, word)
                    && let Some((_, e)) = self.primary(p)
                {
                    next = Some((kind, e));
                    break;
                }
            }
            let Some((kind, e)) = next else { break };
            left = self.node(Kind::Arith(kind), pos, e);
            end = e;
        }
        Some((left, end))
    }

    fn primary(&self, pos: usize) -> Option<(Expr, usize)> {
        if self.byte(pos) == Some(b'(') {
            let p = self.bws(pos + 1);
            let (inner, e) = self.or_expr(p)?;
            let e = self.bws(e);
            return (self.byte(e) == Some(b')')).then_some((inner, e + 1));
        }
        if let Some(r) = self.call(pos) {
            return Some(r);
        }
        if let Some(r) = self.literal(pos) {
            return Some(r);
        }
        self.member(pos)
    }

    fn identifier(&self, pos: usize) -> Option<usize> {
        match self.byte(pos) {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
            _ => return None,
        }
        let mut e = pos + 1;
        while matches!(self.byte(e), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            e += 1;
        }
        Some(e)
    }

    fn call(&self, pos: usize) -> Option<(Expr, usize)> {
        let name_end = self.identifier(pos)?;
        if self.byte(name_end) != Some(b'(') {
            return None;
        }
        let name = self.src.get(pos..name_end)?;
        let (_, min, max) = KNOWN_FUNCTIONS.iter().find(|(n, _, _)| *n == name)?;
        let mut args = Vec::new();
        let mut p = self.bws(name_end + 1);
        if self.byte(p) != Some(b')') {
            loop {
                let (arg, e) = self.additive(p)?;
                args.push(arg);
                let e = self.bws(e);
                match self.byte(e) {
                    Some(b',') => p = self.bws(e + 1),
                    Some(b')') => {
                        p = e;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if args.len() < *min || args.len() > *max {
            return None;
        }
        let end = p + 1;
        Some((self.node(Kind::Call(name.to_owned(), args), pos, end), end))
    }

    fn keyword(&self, pos: usize, word: &str) -> Option<usize> {
        if !self.lit_at(pos, word) {
            return None;
        }
        let end = pos + word.len();
        match self.byte(end) {
            Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'/' || b == b'(' => None,
            _ => Some(end),
        }
    }

    fn literal(&self, pos: usize) -> Option<(Expr, usize)> {
        for (word, lit) in [
            ("null", Lit::Null),
            ("true", Lit::Bool(true)),
            ("false", Lit::Bool(false)),
        ] {
            if let Some(e) = self.keyword(pos, word) {
                return Some((self.node(Kind::Lit(lit), pos, e), e));
            }
        }
        if self.byte(pos) == Some(b'\'') {
            // Doubled quotes do not end the string; like Central, they are not unescaped.
            let mut i = pos + 1;
            loop {
                match self.byte(i) {
                    None => return None,
                    Some(b'\'') if self.byte(i + 1) == Some(b'\'') => i += 2,
                    Some(b'\'') => break,
                    Some(_) => i += 1,
                }
            }
            let inner = self.src.get(pos + 1..i)?.to_owned();
            let e = i + 1;
            return Some((self.node(Kind::Lit(Lit::Str(inner)), pos, e), e));
        }
        if let Some((t, e)) = self.datetime(pos) {
            return Some((self.node(Kind::Lit(Lit::Time(t)), pos, e), e));
        }
        self.number(pos)
    }

    fn digits(&self, pos: usize, n: usize) -> Option<usize> {
        (0..n)
            .all(|k| self.byte(pos + k).is_some_and(|b| b.is_ascii_digit()))
            .then_some(pos + n)
    }

    /// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDThh:mm[:ss[.fff]](Z|±hh:mm)`.
    fn datetime(&self, pos: usize) -> Option<(DateTime<Utc>, usize)> {
        let e = self.digits(pos, 4)?;
        let e = (self.byte(e) == Some(b'-')).then_some(e + 1)?;
        let e = self.digits(e, 2)?;
        let e = (self.byte(e) == Some(b'-')).then_some(e + 1)?;
        let date_end = self.digits(e, 2)?;
        let date = NaiveDate::parse_from_str(self.src.get(pos..date_end)?, "%Y-%m-%d").ok()?;
        if let Some(t) = self.time_part(date_end) {
            let text = self.src.get(pos..t)?;
            let with_seconds =
                if text.len() == date_end - pos + 6 || text.as_bytes().get(16) != Some(&b':') {
                    // hh:mm without seconds: insert them for the RFC 3339 parser.
                    format!("{}:00{}", text.get(..16)?, text.get(16..)?)
                } else {
                    text.to_owned()
                };
            let parsed = DateTime::parse_from_rfc3339(&with_seconds).ok()?;
            return Some((parsed.to_utc(), t));
        }
        if self
            .byte(date_end)
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && self.byte(date_end) != Some(b'T')
        {
            return None;
        }
        Some((date.and_hms_opt(0, 0, 0)?.and_utc(), date_end))
    }

    fn time_part(&self, pos: usize) -> Option<usize> {
        let e = (self.byte(pos) == Some(b'T')).then_some(pos + 1)?;
        let e = self.digits(e, 2)?;
        let e = (self.byte(e) == Some(b':')).then_some(e + 1)?;
        let mut e = self.digits(e, 2)?;
        if self.byte(e) == Some(b':') {
            e = self.digits(e + 1, 2)?;
            if self.byte(e) == Some(b'.') {
                let start = e + 1;
                e = start;
                while self.byte(e).is_some_and(|b| b.is_ascii_digit()) {
                    e += 1;
                }
                if e == start {
                    return None;
                }
            }
        }
        match self.byte(e) {
            Some(b'Z') => Some(e + 1),
            Some(b'+' | b'-') => {
                let z = self.digits(e + 1, 2)?;
                let z = (self.byte(z) == Some(b':')).then_some(z + 1)?;
                self.digits(z, 2)
            }
            _ => None,
        }
    }

    fn number(&self, pos: usize) -> Option<(Expr, usize)> {
        let mut e = pos;
        if self.byte(e) == Some(b'-') {
            e += 1;
        }
        let int_start = e;
        while self.byte(e).is_some_and(|b| b.is_ascii_digit()) {
            e += 1;
        }
        if e == int_start {
            return None;
        }
        if self.byte(e) == Some(b'.') && self.byte(e + 1).is_some_and(|b| b.is_ascii_digit()) {
            e += 1;
            while self.byte(e).is_some_and(|b| b.is_ascii_digit()) {
                e += 1;
            }
        }
        if matches!(self.byte(e), Some(b'e' | b'E')) {
            let mut x = e + 1;
            if matches!(self.byte(x), Some(b'+' | b'-')) {
                x += 1;
            }
            let digits_start = x;
            while self.byte(x).is_some_and(|b| b.is_ascii_digit()) {
                x += 1;
            }
            if x > digits_start {
                e = x;
            }
        }
        if self
            .byte(e)
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return None;
        }
        let n: f64 = self.src.get(pos..e)?.parse().ok()?;
        Some((self.node(Kind::Lit(Lit::Num(n)), pos, e), e))
    }

    fn member(&self, pos: usize) -> Option<(Expr, usize)> {
        let mut p = pos;
        if self.lit_at(p, "$root/") {
            p += "$root/".len();
        }
        let mut e = self.identifier(p)?;
        while self.byte(e) == Some(b'/') {
            match self.identifier(e + 1) {
                Some(x) => e = x,
                None => break,
            }
        }
        let raw = self.src.get(pos..e)?.to_owned();
        Some((self.node(Kind::Member(raw), pos, e), e))
    }
}

// ------------------------------------------------------------------------------------------------
// Evaluation.

#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Time(DateTime<Utc>),
}

fn field_value(member: &str, row: &Submission) -> V {
    let time = |t: Option<DateTime<Utc>>| t.map_or(V::Null, V::Time);
    match normalise(member) {
        "__id" => V::Str(row.instance_id.clone()),
        "__system/submissionDate" => V::Time(row.created_at),
        "__system/updatedAt" => time(row.updated_at),
        "__system/deletedAt" => time(row.deleted_at),
        "__system/submitterId" => row.submitter_id.map_or(V::Null, |id| V::Num(id as f64)),
        "__system/reviewState" => row
            .review_state
            .map_or(V::Null, |r| V::Str(r.as_str().to_owned())),
        _ => V::Null,
    }
}

fn eval(e: &Expr, row: &Submission, now: DateTime<Utc>) -> V {
    match &e.kind {
        Kind::Member(m) => field_value(m, row),
        Kind::Lit(l) => match l {
            Lit::Null => V::Null,
            Lit::Bool(b) => V::Bool(*b),
            Lit::Num(n) => V::Num(*n),
            Lit::Str(s) => V::Str(s.clone()),
            Lit::Time(t) => V::Time(*t),
        },
        Kind::Call(name, args) => {
            let name = name.to_ascii_lowercase();
            if name == "now" {
                return V::Time(now);
            }
            let arg = args.first().map_or(V::Null, |a| eval(a, row, now));
            let t = match arg {
                V::Time(t) => t,
                V::Str(s) => match parse_time(&s) {
                    Some(t) => t,
                    None => return V::Null,
                },
                _ => return V::Null,
            };
            let part = match name.as_str() {
                "year" => t.year(),
                "month" => i32::try_from(t.month()).unwrap_or(0),
                "day" => i32::try_from(t.day()).unwrap_or(0),
                "hour" => i32::try_from(t.hour()).unwrap_or(0),
                "minute" => i32::try_from(t.minute()).unwrap_or(0),
                // Postgres' extract(second …) includes the fraction.
                "second" => {
                    return V::Num(
                        f64::from(t.second()) + f64::from(t.timestamp_subsec_millis()) / 1000.0,
                    );
                }
                _ => return V::Null,
            };
            V::Num(f64::from(part))
        }
        Kind::Cmp(..) | Kind::And(..) | Kind::Or(..) | Kind::Not(..) => {
            eval_bool(e, row, now).map_or(V::Null, V::Bool)
        }
        Kind::Arith(_) => V::Null,
    }
}

fn eval_bool(e: &Expr, row: &Submission, now: DateTime<Utc>) -> Option<bool> {
    match &e.kind {
        Kind::And(l, r) => match (eval_bool(l, row, now), eval_bool(r, row, now)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Kind::Or(l, r) => match (eval_bool(l, row, now), eval_bool(r, row, now)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Kind::Not(x) => eval_bool(x, row, now).map(|b| !b),
        Kind::Cmp(op, l, r) => {
            let (a, b) = (eval(l, row, now), eval(r, row, now));
            match op {
                // Central compiles eq/ne to IS [NOT] DISTINCT FROM: null-safe.
                CmpOp::Eq | CmpOp::Ne => {
                    let same = match (&a, &b) {
                        (V::Null, V::Null) => true,
                        (V::Null, _) | (_, V::Null) => false,
                        _ => compare(&a, &b) == Some(Ordering::Equal),
                    };
                    Some(if *op == CmpOp::Eq { same } else { !same })
                }
                _ => {
                    let ord = compare(&a, &b)?;
                    Some(match op {
                        CmpOp::Lt => ord == Ordering::Less,
                        CmpOp::Le => ord != Ordering::Greater,
                        CmpOp::Gt => ord == Ordering::Greater,
                        CmpOp::Ge => ord != Ordering::Less,
                        CmpOp::Eq | CmpOp::Ne => false,
                    })
                }
            }
        }
        _ => match eval(e, row, now) {
            V::Bool(b) => Some(b),
            _ => None,
        },
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

/// Compares two non-null values the way Postgres would after casting the literal to the
/// column's type; None when they cannot be compared (Postgres would raise an error).
fn compare(a: &V, b: &V) -> Option<Ordering> {
    match (a, b) {
        (V::Time(x), V::Time(y)) => Some(x.cmp(y)),
        (V::Time(x), V::Str(s)) => parse_time(s).map(|y| x.cmp(&y)),
        (V::Str(s), V::Time(y)) => parse_time(s).map(|x| x.cmp(y)),
        (V::Num(x), V::Num(y)) => x.partial_cmp(y),
        (V::Num(x), V::Str(s)) => s.trim().parse::<f64>().ok().and_then(|y| x.partial_cmp(&y)),
        (V::Str(s), V::Num(y)) => s.trim().parse::<f64>().ok().and_then(|x| x.partial_cmp(y)),
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------------
// $orderby

/// One `$orderby` term: a system field and a direction.
#[derive(Debug, Clone)]
pub(crate) struct OrderTerm {
    field: String,
    desc: bool,
}

/// Parses `$orderby`: comma-separated `field [asc|desc]` over the filterable system fields.
pub(crate) fn parse_orderby(src: &str) -> Result<Vec<OrderTerm>, Problem> {
    let mut terms = Vec::new();
    let mut offset = 0;
    for part in src.split(',') {
        let lead = part.len() - part.trim_start().len();
        let words: Vec<&str> = part.split_whitespace().collect();
        let (field, dir) = match words.as_slice() {
            [f] => (*f, None),
            [f, d] => (*f, Some(d.to_ascii_lowercase())),
            _ => {
                let reason = format!("Unexpected character at {}", offset + lead);
                return Err(Problem::unparseable_filter(&reason));
            }
        };
        let desc = match dir.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                let reason = format!("Unexpected character at {}", offset + lead + field.len());
                return Err(Problem::unparseable_filter(&reason));
            }
        };
        if !FILTERABLE.contains(&normalise(field)) {
            return Err(Problem::unsupported_field(offset + lead, field));
        }
        terms.push(OrderTerm {
            field: normalise(field).to_owned(),
            desc,
        });
        offset += part.len() + 1;
    }
    Ok(terms)
}

/// Sorts rows by the terms: ascending puts nulls first, descending last (Central's
/// `NULLS FIRST` / `NULLS LAST`); ties are broken on the insertion order.
pub(crate) fn sort_rows(rows: &mut [&Submission], terms: &[OrderTerm]) {
    let tie_desc = terms.last().is_some_and(|t| t.desc);
    rows.sort_by(|a, b| {
        for t in terms {
            let (x, y) = (field_value(&t.field, a), field_value(&t.field, b));
            let ord = match (&x, &y) {
                (V::Null, V::Null) => Ordering::Equal,
                // asc NULLS FIRST; desc NULLS LAST, i.e. after reversal nulls are still last.
                (V::Null, _) => {
                    if t.desc {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (_, V::Null) => {
                    if t.desc {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                _ => {
                    let o = compare(&x, &y).unwrap_or(Ordering::Equal);
                    if t.desc { o.reverse() } else { o }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        if tie_desc {
            b.seq.cmp(&a.seq)
        } else {
            a.seq.cmp(&b.seq)
        }
    });
}

/// Problem details helpers used by [`Problem`] constructors.
pub(crate) fn at_text(at: usize, text: &str) -> Json {
    Json::obj()
        .put("at", Json::int(i64::try_from(at).unwrap_or(0)))
        .put("text", Json::str(text))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn row(
        created: &str,
        updated: Option<&str>,
        review: Option<super::super::ReviewState>,
    ) -> Submission {
        let t = |s: &str| parse_time(s).unwrap_or_default();
        Submission {
            seq: 1,
            instance_id: "uuid:a".into(),
            current_instance_id: "uuid:a".into(),
            data: Value::Null,
            created_at: t(created),
            version_created_at: t(created),
            updated_at: updated.map(t),
            deleted_at: None,
            submitter_id: Some(5),
            device_id: None,
            user_agent: None,
            review_state: review,
            edits: 0,
            form_version: "1".into(),
            attachments_present: 0,
            attachments_expected: 0,
            status: None,
        }
    }

    fn problem_code(src: &str) -> String {
        match Filter::parse(src) {
            Ok(_) => "ok".into(),
            Err(p) => p.code.to_owned(),
        }
    }

    #[test]
    fn parse_errors_and_unsupported_features_match_central() {
        let Err(p) = Filter::parse("__system/submissionDate ge") else {
            panic!("expected 400.18")
        };
        assert_eq!(p.code, "400.18");
        assert_eq!(
            p.message,
            "The OData filter expression you provided could not be parsed: Unexpected character at 23"
        );
        assert_eq!(problem_code("person/name eq 'Amina'"), "501.5");
        assert_eq!(problem_code("contains(__id,'x')"), "501.4");
        assert_eq!(problem_code("__system/edits eq 1"), "501.5");
        assert_eq!(problem_code("__system/submitterId add 1 eq 6"), "501.4");
        assert_eq!(
            problem_code(
                "year(__system/submissionDate) eq 2026 and not (__system/reviewState eq 'approved')"
            ),
            "ok"
        );
        assert_eq!(
            problem_code("$root/Submissions/__system/submissionDate ge 2020-02-01"),
            "ok"
        );
        assert_eq!(
            problem_code("(__id eq 'a' or __id eq 'b') and __system/deletedAt eq null"),
            "ok"
        );
    }

    #[test]
    fn evaluation_is_three_valued_and_null_safe() {
        let now = Utc::now();
        let r = row("2026-11-29T05:23:55.638Z", None, None);
        let m = |src: &str| {
            Filter::parse(src)
                .map(|f| f.matches(&r, now))
                .unwrap_or(false)
        };
        assert!(m("__system/submissionDate ge 2026-11-29T05:23:55.638Z"));
        assert!(!m("__system/submissionDate gt 2026-11-29T05:23:55.638Z"));
        assert!(m(
            "__system/submissionDate le 2026-11-29T06:23:55.638+01:00 or __system/submissionDate gt 2027-01-01"
        ));
        assert!(m("__system/submissionDate ge 2026-11-29"));
        assert!(m("__system/updatedAt eq null"));
        assert!(!m("__system/updatedAt ne null"));
        assert!(!m("__system/updatedAt gt 2020-01-01"));
        assert!(!m("not (__system/updatedAt gt 2020-01-01)"));
        assert!(m("not (__system/reviewState eq 'approved')"));
        assert!(m(
            "__system/submitterId eq 5 and year(__system/submissionDate) eq 2026"
        ));
        assert!(m(
            "month(__system/submissionDate) eq 11 and day(__system/submissionDate) eq 29"
        ));
    }
}
