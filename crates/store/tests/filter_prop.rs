//! The filter compiler agrees with the in-memory evaluator: on every backend from
//! `g2p_testkit::backends()`, `SELECT r.id … WHERE <compiled domain>` returns exactly the
//! registrants for which `Domain::matches` is true, for random domains over every field kind and
//! operator, on a random registry built from a tiny ASCII alphabet (so that equalities, LIKE
//! wildcards, escapes and NULLs all occur). Plus hand-written checks of the OpenG2P default
//! domains and of the datetime text format sqlx writes on SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Days, NaiveDate, SecondsFormat, TimeZone, Utc};
use g2p_domain::filter::Domain;
use g2p_domain::{IdStatus, RegId, Registrant, SEED_ID_TYPES};
use g2p_store::{Store, bind_values, filter_sql, with_db};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Store helpers
// ---------------------------------------------------------------------------------------------

const INSERT_REGISTRANT: &str = "INSERT INTO registrants (id, external_key, is_group, name, \
    given_name, family_name, addl_name, gender, birthdate, birthdate_not_exact, birth_place, \
    address, phone, email, registration_date, disabled, disabled_reason, group_kind, attributes, \
    created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
    $15, $16, $17, $18, $19, $20, $21)";

const INSERT_REG_ID: &str = "INSERT INTO reg_ids (registrant_id, id_type_id, value, expiry_date, \
    status, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

async fn insert(store: &Store, rows: &[(Registrant, Vec<RegId>)]) -> anyhow::Result<()> {
    let types: Vec<(i64, String)> = with_db!(store, read, p => {
        sqlx::query_as("SELECT id, name FROM id_types").fetch_all(p).await?
    });
    let type_ids: HashMap<String, i64> = types.into_iter().map(|(id, n)| (n, id)).collect();
    with_db!(store, write, p => {
        for (r, ids) in rows {
            sqlx::query(INSERT_REGISTRANT)
                .bind(r.id)
                .bind(r.external_key.as_deref())
                .bind(r.is_group)
                .bind(r.name.as_str())
                .bind(r.given_name.as_deref())
                .bind(r.family_name.as_deref())
                .bind(r.addl_name.as_deref())
                .bind(r.gender.as_deref())
                .bind(r.birthdate)
                .bind(r.birthdate_not_exact)
                .bind(r.birth_place.as_deref())
                .bind(r.address.as_deref())
                .bind(r.phone.as_deref())
                .bind(r.email.as_deref())
                .bind(r.registration_date)
                .bind(r.disabled)
                .bind(r.disabled_reason.as_deref())
                .bind(r.group_kind.as_deref())
                .bind(sqlx::types::Json(&r.attributes))
                .bind(r.created_at)
                .bind(r.updated_at)
                .execute(p)
                .await?;
            for id in ids {
                let type_id = type_ids
                    .get(&id.id_type)
                    .copied()
                    .ok_or_else(|| anyhow::anyhow!("no ID type {}", id.id_type))?;
                sqlx::query(INSERT_REG_ID)
                    .bind(r.id)
                    .bind(type_id)
                    .bind(id.value.as_str())
                    .bind(id.expiry_date)
                    .bind(id.status.as_str())
                    .bind(id.description.as_deref())
                    .bind(id.updated_at)
                    .bind(id.updated_at)
                    .execute(p)
                    .await?;
            }
        }
    });
    Ok(())
}

/// What the store's callers will do: the compiled expression in a WHERE clause, parameters
/// bound with `bind_values!`.
async fn select_ids(store: &Store, d: &Domain) -> anyhow::Result<Vec<i64>> {
    let (expr, params) = filter_sql::compile(d, store.backend(), 1);
    let sql = format!("SELECT r.id FROM registrants r WHERE {expr} ORDER BY r.id");
    let ids = with_db!(store, read, p => {
        bind_values!(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())), &params)
            .fetch_all(p)
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nSQL: {sql}\nparams: {params:?}"))?
    });
    Ok(ids)
}

fn expected(d: &Domain, rows: &[(Registrant, Vec<RegId>)]) -> Vec<i64> {
    rows.iter()
        .filter(|(r, ids)| d.matches(r, ids))
        .map(|(r, _)| r.id)
        .collect()
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn registrant(id: i64, name: &str) -> Registrant {
    Registrant {
        id,
        external_key: None,
        is_group: false,
        name: name.into(),
        given_name: None,
        family_name: None,
        addl_name: None,
        gender: None,
        birthdate: None,
        birthdate_not_exact: false,
        birth_place: None,
        address: None,
        phone: None,
        phone_numbers: vec![],
        email: None,
        registration_date: None,
        disabled: false,
        disabled_reason: None,
        group_kind: None,
        attributes: Map::new(),
        created_at: ts("2024-01-01T00:00:00Z"),
        updated_at: ts("2024-01-01T00:00:00Z"),
        version: 1,
    }
}

fn reg_id(registrant_id: i64, id_type: &str, value: &str) -> RegId {
    RegId {
        id: 0,
        registrant_id,
        id_type_id: 0,
        id_type: id_type.into(),
        value: value.into(),
        expiry_date: None,
        status: IdStatus::Valid,
        description: None,
        updated_at: ts("2024-01-01T00:00:00Z"),
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written checks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openg2p_default_domains_on_every_backend() {
    let rows = vec![
        (
            registrant(1, "VID ONLY"),
            vec![reg_id(1, "MOSIP VID", "v1")],
        ),
        (
            registrant(2, "VID AND TOKEN"),
            vec![
                reg_id(2, "MOSIP VID", "v2"),
                reg_id(2, "MOSIP UIN TOKEN", "t2"),
            ],
        ),
        (
            registrant(3, "TOKEN ONLY"),
            vec![reg_id(3, "MOSIP UIN TOKEN", "t3")],
        ),
        (registrant(4, "NO IDS"), vec![]),
        (
            registrant(5, "VID AND PHONE"),
            vec![reg_id(5, "MOSIP VID", "v5"), reg_id(5, "PHONE", "555")],
        ),
        (registrant(6, "UIN"), vec![reg_id(6, "MOSIP UIN", "u6")]),
    ];
    let default = Domain::parse_str(
        r#"[["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],"!",["reg_ids.id_type","=like","MOSIP UIN TOKEN"]]"#,
    )
    .unwrap();
    let vid_delete = Domain::parse_str(
        r#"[["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],["reg_ids.id_type","=like","MOSIP UIN TOKEN"]]"#,
    )
    .unwrap();
    let other_than_vid = Domain::parse_str(r#"[["reg_ids.id_type","!=","MOSIP VID"]]"#).unwrap();
    let no_ids = Domain::parse_str(r#"[["reg_ids","=",false]]"#).unwrap();
    let like_mosip = Domain::parse_str(r#"[["reg_ids.id_type","=like","MOSIP %"]]"#).unwrap();
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        insert(&store, &rows).await.unwrap();
        assert_eq!(
            select_ids(&store, &default).await.unwrap(),
            vec![1, 5],
            "{b}"
        );
        assert_eq!(
            select_ids(&store, &vid_delete).await.unwrap(),
            vec![2],
            "{b}"
        );
        assert_eq!(
            select_ids(&store, &other_than_vid).await.unwrap(),
            vec![2, 3, 5, 6],
            "{b}"
        );
        assert_eq!(select_ids(&store, &no_ids).await.unwrap(), vec![4], "{b}");
        assert_eq!(
            select_ids(&store, &like_mosip).await.unwrap(),
            vec![1, 2, 3, 5, 6],
            "{b}"
        );
        for d in [&default, &vid_delete, &other_than_vid, &no_ids, &like_mosip] {
            assert_eq!(
                select_ids(&store, d).await.unwrap(),
                expected(d, &rows),
                "{b} {d}"
            );
        }
        // The compiled expression composes with the caller's own conditions and parameters.
        let (expr, mut params) = filter_sql::compile(&default, store.backend(), 1);
        let k = params.len() + 1;
        params.push(g2p_store::SqlValue::Int(1));
        let sql = format!(
            "SELECT r.id FROM registrants r WHERE {expr} AND r.id > ${k} ORDER BY r.id LIMIT 10"
        );
        let page: Vec<i64> = with_db!(store, read, p => {
            bind_values!(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())), &params)
                .fetch_all(p)
                .await
                .unwrap()
        });
        assert_eq!(page, vec![5], "{b}");
    }
}

#[tokio::test]
async fn datetimes_compare_like_instants_on_every_backend() {
    let instants = [
        "2024-01-01T00:00:01Z",
        "2024-01-01T00:00:01.5Z",
        "2024-01-01T00:00:01.000001Z",
        "2024-01-01T00:00:01.123456Z",
        "2024-01-01T00:00:02Z",
    ];
    let rows: Vec<_> = instants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = registrant(i as i64 + 1, "X");
            r.created_at = ts(t);
            (r, vec![])
        })
        .collect();
    for store in g2p_testkit::backends().await {
        insert(&store, &rows).await.unwrap();
        if store.backend() == g2p_store::Backend::Sqlite {
            // The text sqlx writes for DateTime<Utc> on SQLite, which filter_sql relies on.
            let texts: Vec<String> = with_db!(store, read, p => {
                sqlx::query_scalar("SELECT created_at FROM registrants ORDER BY id")
                    .fetch_all(p)
                    .await
                    .unwrap()
            });
            let want: Vec<String> = rows
                .iter()
                .map(|(r, _)| r.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
                .collect();
            assert_eq!(texts, want);
            assert_eq!(texts[1], "2024-01-01T00:00:01.500+00:00");
        }
        for (f, want) in [
            (
                json!([["create_date", ">", "2024-01-01 00:00:01"]]),
                vec![2, 3, 4, 5],
            ),
            (
                json!([["create_date", "=", "2024-01-01 00:00:01.500000"]]),
                vec![2],
            ),
            (
                json!([["create_date", "<", "2024-01-01T00:00:01.2Z"]]),
                vec![1, 3, 4],
            ),
            (
                json!([["created_at", ">=", "2024-01-01T01:00:01.5+01:00"]]),
                vec![2, 5],
            ),
            (json!([["write_date", "!=", false]]), vec![1, 2, 3, 4, 5]),
        ] {
            let d = Domain::from_json(&f).unwrap();
            assert_eq!(
                select_ids(&store, &d).await.unwrap(),
                want,
                "{} {f}",
                store.backend().name()
            );
            assert_eq!(expected(&d, &rows), want, "{f}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random registries
// ---------------------------------------------------------------------------------------------

/// Small on purpose: values collide, and `%`, `_` and `\` exercise LIKE patterns and escapes.
const ALPHABET: &[char] = &['a', 'b', 'A', '_', '%', '\\'];
const ATTR_KEYS: &[&str] = &["k1", "k2", "k3"];

fn text() -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(select(ALPHABET), 0..=3).prop_map(|v| v.into_iter().collect())
}

fn opt_text() -> impl Strategy<Value = Option<String>> + Clone {
    prop::option::weighted(0.7, text())
}

fn base_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
}

fn date() -> impl Strategy<Value = NaiveDate> + Clone {
    (0u64..6).prop_map(|d| base_date() + Days::new(d))
}

/// A few instants, with sub-second parts that sqlx writes with 0, 3 or 6 decimals.
fn instant() -> impl Strategy<Value = DateTime<Utc>> + Clone {
    (0u32..3, select(vec![0u32, 500_000, 123_456, 1])).prop_map(|(s, us)| {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, s).unwrap()
            + chrono::Duration::microseconds(us.into())
    })
}

fn attr_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        3 => text().prop_map(Value::from),
        3 => (-1i64..3).prop_map(Value::from),
        1 => select(vec![1.5, -0.5, 2.0]).prop_map(Value::from),
        2 => any::<bool>().prop_map(Value::from),
        1 => Just(json!([1])),
    ]
}

fn attributes() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(select(ATTR_KEYS), attr_value(), 0..=3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn reg_ids() -> impl Strategy<Value = Vec<RegId>> {
    // Distinct types: (registrant_id, id_type_id) is unique.
    prop::sample::subsequence(SEED_ID_TYPES.to_vec(), 0..=3).prop_flat_map(|types| {
        let n = types.len();
        let fields = (
            text(),
            any::<bool>(),
            prop::option::of(date()),
            opt_text(),
            instant(),
        );
        prop::collection::vec(fields, n).prop_map(move |fs| {
            types
                .iter()
                .zip(fs)
                .map(|(t, (value, valid, expiry, description, at))| RegId {
                    id: 0,
                    registrant_id: 0,
                    id_type_id: 0,
                    id_type: (*t).to_owned(),
                    value,
                    expiry_date: expiry,
                    status: if valid {
                        IdStatus::Valid
                    } else {
                        IdStatus::Invalid
                    },
                    description,
                    updated_at: at,
                })
                .collect()
        })
    })
}

fn registrant_row() -> impl Strategy<Value = (Registrant, Vec<RegId>)> {
    let texts = (
        text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
    );
    let others = (
        prop::option::weighted(0.7, date()),
        prop::option::weighted(0.7, date()),
        instant(),
        instant(),
        any::<(bool, bool, bool)>(),
        attributes(),
        reg_ids(),
    );
    (texts, others).prop_map(|(t, o)| {
        let (name, given, family, addl, gender, place, address, phone, email, reason, kind, key) =
            t;
        let (birthdate, registration_date, created_at, updated_at, flags, attributes, ids) = o;
        let r = Registrant {
            id: 0,
            external_key: key,
            is_group: flags.0,
            name,
            given_name: given,
            family_name: family,
            addl_name: addl,
            gender,
            birthdate,
            birthdate_not_exact: flags.1,
            birth_place: place,
            address,
            phone,
            phone_numbers: vec![],
            email,
            registration_date,
            disabled: flags.2,
            disabled_reason: reason,
            group_kind: kind,
            attributes,
            created_at,
            updated_at,
            version: 1,
        };
        (r, ids)
    })
}

fn dataset() -> impl Strategy<Value = Vec<(Registrant, Vec<RegId>)>> {
    prop::collection::vec(registrant_row(), 60).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (mut r, mut ids))| {
                r.id = i as i64 + 1;
                // external_key is unique: keep the random prefix, make it distinct.
                r.external_key = r.external_key.map(|k| format!("{k}#{}", r.id));
                for id in &mut ids {
                    id.registrant_id = r.id;
                }
                (r, ids)
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Random domains
// ---------------------------------------------------------------------------------------------

const TEXT_FIELDS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "addl_name",
    "gender",
    "birth_place",
    "address",
    "phone",
    "email",
    "disabled_reason",
    "group_kind",
    "kind",
    "external_key",
    "reg_ids.value",
    "reg_ids.description",
];
const ALL_OPS: &[&str] = &[
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "like",
    "not like",
    "ilike",
    "not ilike",
    "=like",
    "=ilike",
    "in",
    "not in",
    "<>",
    "==",
    "LIKE",
    "Not ILike",
];
const ORDERED_OPS: &[&str] = &["=", "!=", "<", "<=", ">", ">=", "in", "not in", "<>"];
const EQ_OPS: &[&str] = &["=", "!=", "in", "not in"];

/// A `=like` pattern may not end with a lone escape character.
fn pattern_safe(s: String) -> String {
    if s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1 {
        format!("{s}a")
    } else {
        s
    }
}

/// A value for `op`, from `scalar` (JSON scalars of the field's type) and `unset`.
fn operand(op: &str, scalar: BoxedStrategy<Value>, unset: Vec<Value>) -> BoxedStrategy<Value> {
    let item = if unset.is_empty() {
        scalar.clone()
    } else {
        prop_oneof![4 => scalar.clone(), 1 => select(unset.clone())].boxed()
    };
    match op.to_ascii_lowercase().as_str() {
        "=" | "!=" | "<>" | "==" => item,
        "=like" | "=ilike" => scalar
            .prop_map(|v| Value::from(pattern_safe(v.as_str().unwrap_or("").to_owned())))
            .boxed(),
        "in" | "not in" => prop_oneof![
            4 => prop::collection::vec(item, 0..4).prop_map(Value::Array),
            1 => scalar,
        ]
        .boxed(),
        _ => scalar,
    }
}

fn leaf_of(
    fields: &'static [&'static str],
    ops: &'static [&'static str],
    scalar: fn() -> BoxedStrategy<Value>,
    unset: Vec<Value>,
) -> BoxedStrategy<Value> {
    (select(fields), select(ops))
        .prop_flat_map(move |(f, op)| {
            operand(op, scalar(), unset.clone()).prop_map(move |v| json!([f, op, v]))
        })
        .boxed()
}

fn text_scalar() -> BoxedStrategy<Value> {
    text().prop_map(Value::from).boxed()
}

fn date_scalar() -> BoxedStrategy<Value> {
    date()
        .prop_map(|d| Value::from(d.format("%Y-%m-%d").to_string()))
        .boxed()
}

fn datetime_scalar() -> BoxedStrategy<Value> {
    (instant(), 0..3u8)
        .prop_map(|(t, f)| {
            Value::from(match f {
                0 => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                1 => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                _ => t.format("%Y-%m-%d").to_string(),
            })
        })
        .boxed()
}

fn bool_scalar() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::from).boxed()
}

fn id_scalar() -> BoxedStrategy<Value> {
    (0i64..65).prop_map(Value::from).boxed()
}

fn id_type_scalar() -> BoxedStrategy<Value> {
    let mut names: Vec<String> = SEED_ID_TYPES.iter().map(|s| (*s).to_owned()).collect();
    names.extend(["MOSIP%", "%TOKEN", "mosip vid", "MOSIP _ID", "VID", ""].map(str::to_owned));
    select(names).prop_map(Value::from).boxed()
}

fn status_scalar() -> BoxedStrategy<Value> {
    select(vec!["valid", "invalid", "VALID", "val", "%"])
        .prop_map(Value::from)
        .boxed()
}

fn number_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        (-1i64..3).prop_map(Value::from),
        select(vec![1.5, -0.5, 2.0, 0.0]).prop_map(Value::from),
    ]
    .boxed()
}

fn attr_leaf() -> BoxedStrategy<Value> {
    let key = select(vec![
        "attributes.k1",
        "attributes.k2",
        "attributes.k3",
        "attributes.k9",
    ]);
    let typed = prop_oneof![
        Just((text_scalar as fn() -> BoxedStrategy<Value>, ALL_OPS)),
        Just((number_scalar as fn() -> BoxedStrategy<Value>, ORDERED_OPS)),
        Just((bool_scalar as fn() -> BoxedStrategy<Value>, EQ_OPS)),
    ];
    (key, typed)
        .prop_flat_map(|(f, (scalar, ops))| {
            select(ops).prop_flat_map(move |op| {
                operand(op, scalar(), vec![Value::Null]).prop_map(move |v| json!([f, op, v]))
            })
        })
        .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    let unset = || vec![json!(false), Value::Null];
    prop_oneof![
        5 => leaf_of(TEXT_FIELDS, ALL_OPS, text_scalar, unset()),
        2 => leaf_of(&["reg_ids.id_type"], ALL_OPS, id_type_scalar, vec![]),
        1 => leaf_of(&["reg_ids.status"], ALL_OPS, status_scalar, vec![]),
        2 => leaf_of(&["birthdate", "registration_date", "reg_ids.expiry_date"], ORDERED_OPS, date_scalar, unset()),
        2 => leaf_of(&["create_date", "write_date", "created_at", "updated_at"], ORDERED_OPS, datetime_scalar, unset()),
        2 => leaf_of(&["is_group", "disabled", "birthdate_not_exact", "is_registrant"], EQ_OPS, bool_scalar, vec![Value::Null]),
        1 => leaf_of(&["id"], ORDERED_OPS, id_scalar, unset()),
        3 => attr_leaf(),
        1 => (select(vec!["=", "!="]), select(vec![json!(false), Value::Null]))
            .prop_map(|(op, v)| json!(["reg_ids", op, v])).boxed(),
        1 => select(vec![json!([1, "=", 1]), json!([0, "=", 1])]),
    ]
    .boxed()
}

/// One term in Polish notation, as a token list.
fn term() -> impl Strategy<Value = Vec<Value>> {
    leaf()
        .prop_map(|l| vec![l])
        .prop_recursive(4, 24, 2, |inner| {
            let with = |op: &'static str, parts: Vec<Vec<Value>>| {
                let mut v = vec![json!(op)];
                v.extend(parts.into_iter().flatten());
                v
            };
            prop_oneof![
                inner.clone().prop_map(move |x| with("!", vec![x])),
                (inner.clone(), inner.clone()).prop_map(move |(a, b)| with("&", vec![a, b])),
                (inner.clone(), inner).prop_map(move |(a, b)| with("|", vec![a, b])),
            ]
        })
}

fn domain_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(json!([])),
        8 => prop::collection::vec(term(), 1..4).prop_map(|ts| Value::Array(ts.concat())),
    ]
}

#[test]
fn compiled_sql_agrees_with_evaluator_on_every_backend() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = dataset()
        .new_tree(&mut TestRunner::deterministic())
        .unwrap()
        .current();
    let stores = rt.block_on(async {
        let stores = g2p_testkit::backends().await;
        for s in &stores {
            insert(s, &rows).await.unwrap();
        }
        stores
    });
    let all: Vec<i64> = rows.iter().map(|(r, _)| r.id).collect();
    let proper_subsets = AtomicUsize::new(0);
    // FILTER_PROP_CASES=5000 for a soak run.
    let cases = std::env::var("FILTER_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&domain_json(), |json| {
        let d = Domain::from_json(&json)
            .map_err(|e| TestCaseError::fail(format!("{json} does not parse: {e}")))?;
        let again = Domain::from_json(&d.to_json())
            .map_err(|e| TestCaseError::fail(format!("{} does not re-parse: {e}", d.to_json())))?;
        prop_assert_eq!(&again, &d, "round trip of {}", json);
        let want = expected(&d, &rows);
        if !want.is_empty() && want != all {
            proper_subsets.fetch_add(1, Ordering::Relaxed);
        }
        for store in &stores {
            let got = rt
                .block_on(select_ids(store, &d))
                .map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
            let (sql, _) = filter_sql::compile(&d, store.backend(), 1);
            prop_assert_eq!(
                &got,
                &want,
                "{}: domain {} compiled to {}",
                store.backend().name(),
                json,
                sql
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Guard against a generator that only produces trivial domains.
    let n = proper_subsets.load(Ordering::Relaxed);
    assert!(
        n * 5 >= cases as usize,
        "only {n} of {cases} domains selected a proper, non-empty subset"
    );
}
