//! Reads a migrated schema back from SQLite and from PostgreSQL and lists where the two
//! differ: tables, columns (names, order, types, nullability), primary keys and unique
//! indexes. Any crate with migrations for both dialects (the store, the MTS queue) calls it
//! from a test, so "one schema on both backends" is checked rather than promised.
//!
//! Types cannot be compared by name: SQLite has storage classes and keeps whatever type a
//! column declares. A crate passes its own explicit [`TypePair`] table instead (which SQLite
//! declaration stands for which PostgreSQL type, and why).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sqlx::{PgPool, SqlitePool};

/// One allowed correspondence: the SQLite declared type (as written in the migration) stands
/// for one of these PostgreSQL types (as `information_schema.columns.data_type` names them).
#[derive(Debug, Clone, Copy)]
pub struct TypePair {
    pub sqlite: &'static str,
    pub postgres: &'static [&'static str],
    pub why: &'static str,
}

/// A difference the test accepts on purpose, with the reason (shown if it ever disappears, so
/// stale exceptions are removed too).
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// Exactly as [`differences`] words it.
    pub difference: &'static str,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// SQLite: the declared type, upper case. PostgreSQL: `data_type`.
    pub ty: String,
    pub nullable: bool,
}

/// A unique index other than the primary key. Key columns are names, or `<expression>` for an
/// expression (e.g. `lower(name)`); names of indexes are not compared, because SQLite names
/// the index of a `CONSTRAINT … UNIQUE` `sqlite_autoindex_*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UniqueIndex {
    pub columns: Vec<String>,
    /// Has a `WHERE` clause.
    pub partial: bool,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub unique: BTreeSet<UniqueIndex>,
}

/// The tables of a schema, by name. sqlx's own `_sqlx_migrations` and SQLite's internal
/// tables are left out.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: Vec<Table>,
}

const EXPRESSION: &str = "<expression>";

/// Reads the schema of a SQLite database.
pub async fn sqlite_schema(pool: &SqlitePool) -> Result<Schema, sqlx::Error> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::new();
    for (name,) in names {
        let cols: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT name, upper(type), \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut pk: Vec<(i64, String)> = cols
            .iter()
            .filter(|c| c.3 > 0)
            .map(|c| (c.3, c.0.clone()))
            .collect();
        pk.sort();
        let primary_key: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
        // `INTEGER PRIMARY KEY` is the rowid: never NULL, though the pragma says nullable.
        // Other primary-key columns of SQLite accept NULL unless declared NOT NULL (a
        // documented SQLite quirk), so for them the declaration is what counts.
        let rowid_alias = |c: &(String, String, bool, i64)| {
            primary_key.len() == 1 && c.3 == 1 && c.1 == "INTEGER"
        };
        let columns = cols
            .iter()
            .map(|c| Column {
                name: c.0.clone(),
                ty: c.1.clone(),
                nullable: !c.2 && !rowid_alias(c),
            })
            .collect();
        let indexes: Vec<(String, bool)> = sqlx::query_as(
            "SELECT name, partial FROM pragma_index_list($1) WHERE \"unique\" AND origin <> 'pk'",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut unique = BTreeSet::new();
        for (index, partial) in indexes {
            let keys: Vec<(Option<String>,)> =
                sqlx::query_as("SELECT name FROM pragma_index_xinfo($1) WHERE key ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await?;
            unique.insert(UniqueIndex {
                columns: keys
                    .into_iter()
                    .map(|(k,)| k.unwrap_or_else(|| EXPRESSION.to_owned()))
                    .collect(),
                partial,
            });
        }
        tables.push(Table {
            name,
            columns,
            primary_key,
            unique,
        });
    }
    Ok(Schema { tables })
}

/// Reads the schema of the `public` schema of a PostgreSQL database.
pub async fn pg_schema(pool: &PgPool) -> Result<Schema, sqlx::Error> {
    // information_schema's columns are of domain types: cast them to text for sqlx.
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::new();
    for (name,) in names {
        let cols: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, is_nullable = 'YES' \
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let columns = cols
            .into_iter()
            .map(|(name, ty, nullable)| Column { name, ty, nullable })
            .collect();
        // Key columns in index order; 0 is an expression.
        let indexes: Vec<(bool, bool, Vec<String>)> = sqlx::query_as(
            "SELECT i.indisprimary, i.indpred IS NOT NULL, \
             ARRAY(SELECT COALESCE(a.attname::text, $2) \
                   FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
                   LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                   ORDER BY k.n) \
             FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace s ON s.oid = t.relnamespace \
             WHERE s.nspname = 'public' AND t.relname = $1 AND i.indisunique",
        )
        .bind(&name)
        .bind(EXPRESSION)
        .fetch_all(pool)
        .await?;
        let mut primary_key = Vec::new();
        let mut unique = BTreeSet::new();
        for (is_pk, partial, columns) in indexes {
            if is_pk {
                primary_key = columns;
            } else {
                unique.insert(UniqueIndex { columns, partial });
            }
        }
        tables.push(Table {
            name,
            columns,
            primary_key,
            unique,
        });
    }
    Ok(Schema { tables })
}

fn compatible(types: &[TypePair], sqlite: &str, pg: &str) -> bool {
    types
        .iter()
        .any(|p| p.sqlite == sqlite && p.postgres.contains(&pg))
}

/// Every difference between the two schemas, one line each, minus `allowed`; plus a line for
/// each allowed difference that no longer occurs (so the exception list cannot go stale).
pub fn differences(
    sqlite: &Schema,
    pg: &Schema,
    types: &[TypePair],
    allowed: &[Allowed],
) -> Vec<String> {
    let mut found = Vec::new();
    let names =
        |s: &Schema| -> BTreeSet<String> { s.tables.iter().map(|t| t.name.clone()).collect() };
    let (ls, lp) = (names(sqlite), names(pg));
    for t in ls.difference(&lp) {
        found.push(format!("table {t}: only on SQLite"));
    }
    for t in lp.difference(&ls) {
        found.push(format!("table {t}: only on PostgreSQL"));
    }
    for st in &sqlite.tables {
        let Some(pt) = pg.tables.iter().find(|t| t.name == st.name) else {
            continue;
        };
        let t = &st.name;
        let sn: Vec<&str> = st.columns.iter().map(|c| c.name.as_str()).collect();
        let pn: Vec<&str> = pt.columns.iter().map(|c| c.name.as_str()).collect();
        if sn != pn {
            found.push(format!(
                "table {t}: columns differ: SQLite ({}) vs PostgreSQL ({})",
                sn.join(", "),
                pn.join(", ")
            ));
        }
        for sc in &st.columns {
            let Some(pc) = pt.columns.iter().find(|c| c.name == sc.name) else {
                continue;
            };
            if !compatible(types, &sc.ty, &pc.ty) {
                found.push(format!(
                    "column {t}.{}: type {} on SQLite, {} on PostgreSQL",
                    sc.name, sc.ty, pc.ty
                ));
            }
            if sc.nullable != pc.nullable {
                let word = |n: bool| if n { "nullable" } else { "NOT NULL" };
                found.push(format!(
                    "column {t}.{}: {} on SQLite, {} on PostgreSQL",
                    sc.name,
                    word(sc.nullable),
                    word(pc.nullable)
                ));
            }
        }
        if st.primary_key != pt.primary_key {
            found.push(format!(
                "table {t}: primary key ({}) on SQLite, ({}) on PostgreSQL",
                st.primary_key.join(", "),
                pt.primary_key.join(", ")
            ));
        }
        let show = |u: &UniqueIndex| {
            let mut s = format!("({})", u.columns.join(", "));
            if u.partial {
                let _ = write!(s, " WHERE …");
            }
            s
        };
        for u in st.unique.difference(&pt.unique) {
            found.push(format!("table {t}: unique {} only on SQLite", show(u)));
        }
        for u in pt.unique.difference(&st.unique) {
            found.push(format!("table {t}: unique {} only on PostgreSQL", show(u)));
        }
    }
    let mut out: Vec<String> = found
        .iter()
        .filter(|f| !allowed.iter().any(|a| a.difference == f.as_str()))
        .cloned()
        .collect();
    for a in allowed {
        if !found.iter().any(|f| f == a.difference) {
            out.push(format!(
                "allowed difference no longer occurs, remove it: {} ({})",
                a.difference, a.why
            ));
        }
    }
    out
}

/// SQLite declared types whose pairing is missing from `types` (a new type in a migration must
/// be added to the table on purpose).
pub fn unmapped_sqlite_types(sqlite: &Schema, types: &[TypePair]) -> BTreeSet<String> {
    sqlite
        .tables
        .iter()
        .flat_map(|t| &t.columns)
        .filter(|c| !types.iter().any(|p| p.sqlite == c.ty))
        .map(|c| c.ty.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[TypePair] = &[
        TypePair {
            sqlite: "INTEGER",
            postgres: &["bigint"],
            why: "",
        },
        TypePair {
            sqlite: "TEXT",
            postgres: &["text"],
            why: "",
        },
    ];

    fn col(name: &str, ty: &str, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty: ty.into(),
            nullable,
        }
    }

    fn table(columns: Vec<Column>) -> Schema {
        Schema {
            tables: vec![Table {
                name: "t".into(),
                columns,
                primary_key: vec!["id".into()],
                unique: BTreeSet::new(),
            }],
        }
    }

    #[test]
    fn finds_order_type_and_nullability_differences() {
        let s = table(vec![col("id", "INTEGER", false), col("a", "TEXT", true)]);
        assert!(
            differences(
                &s,
                &table(vec![col("id", "bigint", false), col("a", "text", true)]),
                TYPES,
                &[]
            )
            .is_empty()
        );
        let swapped = table(vec![col("a", "text", true), col("id", "bigint", false)]);
        assert_eq!(differences(&s, &swapped, TYPES, &[]).len(), 1);
        let typed = table(vec![col("id", "integer", false), col("a", "text", false)]);
        assert_eq!(
            differences(&s, &typed, TYPES, &[]),
            vec![
                "column t.id: type INTEGER on SQLite, integer on PostgreSQL".to_owned(),
                "column t.a: nullable on SQLite, NOT NULL on PostgreSQL".to_owned(),
            ]
        );
        let allowed = [Allowed {
            difference: "column t.id: type INTEGER on SQLite, integer on PostgreSQL",
            why: "test",
        }];
        assert_eq!(differences(&s, &typed, TYPES, &allowed).len(), 1);
        // A stale exception is reported.
        let same = table(vec![col("id", "bigint", false), col("a", "text", true)]);
        assert_eq!(differences(&s, &same, TYPES, &allowed).len(), 1);
    }
}
