use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::*;
use crate::{IdStatus, RegId, Registrant};

const OPENG2P_DEFAULT: &str = r#"[["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],"!",["reg_ids.id_type","=like","MOSIP UIN TOKEN"]]"#;
const OPENG2P_VID_DELETE: &str = r#"[["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],["reg_ids.id_type","=like","MOSIP UIN TOKEN"]]"#;

fn person() -> Registrant {
    Registrant {
        id: 7,
        external_key: None,
        is_group: false,
        name: "DIAZ, ANA".into(),
        given_name: Some("Ana".into()),
        family_name: Some("Diaz".into()),
        addl_name: None,
        gender: None,
        birthdate: NaiveDate::from_ymd_opt(1990, 5, 17),
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
        created_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        updated_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        version: 1,
    }
}

fn id(id_type: &str, value: &str) -> RegId {
    RegId {
        id: 1,
        registrant_id: 7,
        id_type_id: 1,
        id_type: id_type.into(),
        value: value.into(),
        expiry_date: None,
        status: IdStatus::Valid,
        description: None,
        updated_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
    }
}

fn d(v: Value) -> Domain {
    match Domain::from_json(&v) {
        Ok(d) => d,
        Err(e) => panic!("{v} should parse: {e}"),
    }
}

fn m(v: Value, r: &Registrant, ids: &[RegId]) -> bool {
    d(v).matches(r, ids)
}

fn err(v: Value) -> FilterError {
    match Domain::from_json(&v) {
        Ok(d) => panic!("{v} should not parse, got {d:?}"),
        Err(e) => e,
    }
}

#[test]
fn openg2p_default_domain_selects_vid_without_token() {
    let dom = Domain::parse_str(OPENG2P_DEFAULT).unwrap();
    let r = person();
    assert!(dom.matches(&r, &[id("MOSIP VID", "1")]));
    assert!(dom.matches(&r, &[id("MOSIP VID", "1"), id("PHONE", "5")]));
    assert!(!dom.matches(&r, &[id("MOSIP VID", "1"), id("MOSIP UIN TOKEN", "t")]));
    assert!(!dom.matches(&r, &[]));
    assert!(!dom.matches(&r, &[id("MOSIP UIN", "1")]));
    // =like is case-sensitive and "MOSIP VID" has no wildcard.
    assert!(!dom.matches(&r, &[id("mosip vid", "1")]));
    // The tree: an AND of three terms, the last a whole-leaf negation.
    let Node::And(xs) = dom.root() else {
        panic!("{dom:?}")
    };
    assert_eq!(xs.len(), 3);
    assert!(matches!(&xs[2], Node::Not(_)));
}

#[test]
fn openg2p_vid_delete_domain_selects_vid_with_token() {
    let dom = Domain::parse_str(OPENG2P_VID_DELETE).unwrap();
    let r = person();
    assert!(dom.matches(&r, &[id("MOSIP VID", "1"), id("MOSIP UIN TOKEN", "t")]));
    assert!(!dom.matches(&r, &[id("MOSIP VID", "1")]));
    assert!(!dom.matches(&r, &[id("MOSIP UIN TOKEN", "t")]));
}

#[test]
fn round_trips_through_json() {
    for s in [
        OPENG2P_DEFAULT,
        OPENG2P_VID_DELETE,
        "[]",
        r#"[[1,"=",1]]"#,
        r#"[[0,"=",1]]"#,
        r#"["|",["name","ilike","an"],"&",["id",">",3],["kind","<>",false]]"#,
        r#"["!","!",["gender","in",["f",false,"m"]]]"#,
        r#"[["create_date",">=","2024-01-02 03:04:05.123456"],["write_date","<","2024-01-02T00:00:00Z"]]"#,
        r#"[["attributes.hh_size",">",2.5],["attributes.x","in",[null,"a"]],["attributes.b","=",false]]"#,
        r#"[["reg_ids","=",false],["disabled","in",[true,null]],["birthdate","not in",[]]]"#,
        r#"["&","&",["id","=",1],["id","=",2],"|",["id","=",3],"|",["id","=",4],["id","=",5]]"#,
    ] {
        let a = Domain::parse_str(s).unwrap();
        let j = a.to_json();
        let b = Domain::from_json(&j).unwrap();
        assert_eq!(a, b, "{s} -> {j}");
        assert_eq!(j, b.to_json());
    }
}

#[test]
fn serde_parses_and_writes_the_json_domain() {
    let dom: Domain = serde_json::from_str(OPENG2P_DEFAULT).unwrap();
    assert_eq!(serde_json::to_value(&dom).unwrap(), dom.to_json());
    let e = serde_json::from_str::<Domain>(r#"[["foo","=",1]]"#).unwrap_err();
    assert!(
        e.to_string().contains(r#"term 0: unknown field "foo""#),
        "{e}"
    );
}

#[test]
fn normalises_operators_and_aliases() {
    let a = d(json!([
        ["kind", "<>", "x"],
        ["created_at", "==", "2024-01-01"]
    ]));
    let b = d(json!([
        ["group_kind", "!=", "x"],
        ["create_date", "=", "2024-01-01 00:00:00"]
    ]));
    assert_eq!(a, b);
    assert_eq!(
        d(json!([["name", "ILIKE", "a"]])),
        d(json!([["name", "ilike", "a"]]))
    );
    // A scalar with `in` is a one-element list.
    assert_eq!(
        d(json!([["name", "in", "a"]])),
        d(json!([["name", "in", ["a"]]]))
    );
}

#[test]
fn and_and_match_all() {
    let all = Domain::match_all();
    assert!(all.is_match_all());
    assert_eq!(all.to_json(), json!([]));
    assert!(all.matches(&person(), &[]));
    let a = d(json!([["id", "=", 7]]));
    let b = d(json!([["name", "like", "ANA"]]));
    assert_eq!(Domain::match_all().and(a.clone()), a);
    let ab = a.clone().and(b.clone());
    assert_eq!(ab, d(json!([["id", "=", 7], ["name", "like", "ANA"]])));
    assert!(ab.matches(&person(), &[]));
    assert!(!ab.and(d(json!([[0, "=", 1]]))).matches(&person(), &[]));
}

#[test]
fn errors_name_the_term_and_element() {
    let cases: Vec<(Value, usize, Option<Element>, &str)> = vec![
        (
            json!([["id", "=", 1], ["name", "=", "a"], ["foo", "=", 1]]),
            2,
            Some(Element::Field),
            r#"unknown field "foo""#,
        ),
        (
            json!([
                ["id", "=", 1],
                "&",
                ["id", "=", 1],
                ["id", "=", 1],
                ["name", "~", "a"]
            ]),
            4,
            Some(Element::Operator),
            r#"operator "~" is not supported"#,
        ),
        (
            json!([["id", "="]]),
            0,
            None,
            r#"expected [field, operator, value] or "&", "|", "!""#,
        ),
        (json!(["x"]), 0, None, r#"found "x""#),
        (json!([7]), 0, None, "expected [field, operator, value]"),
        (
            json!([["id", "=", 1], "&", ["id", "=", 2]]),
            1,
            None,
            r#""&" needs 2 operands, found 1"#,
        ),
        (
            json!([["id", "=", 1], "!"]),
            1,
            None,
            r#""!" needs 1 operand, found 0"#,
        ),
        (
            json!([["id", "=", 1], ["birthdate", ">", "1990-13-01"]]),
            1,
            Some(Element::Value),
            "expected \"YYYY-MM-DD\"",
        ),
        (
            json!([["id", "=", "7"]]),
            0,
            Some(Element::Value),
            "expected an integer",
        ),
        (
            json!([["name", "like", 5]]),
            0,
            Some(Element::Value),
            "needs a string value",
        ),
        (
            json!([["name", "=", 5]]),
            0,
            Some(Element::Value),
            "expected a string",
        ),
        (
            json!([["name", "=", ["a"]]]),
            0,
            Some(Element::Value),
            r#"a list needs "in""#,
        ),
        (
            json!([["name", "in", ["a", 1]]]),
            0,
            Some(Element::Value),
            "list item 1",
        ),
        (
            json!([["is_group", "<", true]]),
            0,
            Some(Element::Operator),
            "boolean field",
        ),
        (
            json!([["is_group", "=", "yes"]]),
            0,
            Some(Element::Value),
            "boolean field",
        ),
        (
            json!([["birthdate", "like", "19"]]),
            0,
            Some(Element::Operator),
            "only supported for text",
        ),
        (
            json!([["id", "<", false]]),
            0,
            Some(Element::Value),
            "false or null",
        ),
        (
            json!([["attributes.a-b", "=", 1]]),
            0,
            Some(Element::Field),
            "attribute key",
        ),
        (
            json!([["attributes.a", "=", {"x": 1}]]),
            0,
            Some(Element::Value),
            "string, number, boolean or null",
        ),
        (
            json!([["attributes.a", "in", [1, "x"]]]),
            0,
            Some(Element::Value),
            "same type",
        ),
        (
            json!([["reg_ids.foo", "=", 1]]),
            0,
            Some(Element::Field),
            "unknown field",
        ),
        (
            json!([["reg_ids", "=", "x"]]),
            0,
            Some(Element::Value),
            "only be compared with false",
        ),
        (
            json!([["reg_ids", "in", []]]),
            0,
            Some(Element::Operator),
            "not supported",
        ),
        (
            json!([["name", "=like", "a\\"]]),
            0,
            Some(Element::Value),
            "lone",
        ),
        (
            json!([["name", "child_of", 1]]),
            0,
            Some(Element::Operator),
            "not supported",
        ),
        (
            json!([[2, "=", 1]]),
            0,
            Some(Element::Field),
            "numeric leaves",
        ),
        (
            json!([["create_date", ">", "yesterday"]]),
            0,
            Some(Element::Value),
            "RFC 3339",
        ),
    ];
    for (v, pos, element, needle) in cases {
        let e = err(v.clone());
        assert_eq!(e.position(), Some(pos), "{v}: {e}");
        assert_eq!(e.element(), element, "{v}: {e}");
        assert!(e.message().contains(needle), "{v}: {e} lacks {needle:?}");
        assert!(e.to_string().starts_with(&format!("term {pos}: ")), "{e}");
    }
    assert_eq!(
        err(json!([["id", "=", 1], ["name", "=", "a"], ["foo", "=", 1]])).to_string(),
        r#"term 2: unknown field "foo""#
    );
}

#[test]
fn whole_filter_errors_have_no_position() {
    for e in [
        Domain::parse_str("[[\"id\",").unwrap_err(),
        Domain::parse_str("{}").unwrap_err(),
        Domain::from_json(&Value::Array(vec![json!(["id", "=", 1]); MAX_TERMS + 1])).unwrap_err(),
    ] {
        assert_eq!(e.position(), None, "{e}");
    }
    assert!(
        Domain::parse_str("nope")
            .unwrap_err()
            .message()
            .contains("not valid JSON")
    );
    assert!(Domain::from_json(&Value::Array(vec![json!(["id", "=", 1]); MAX_TERMS])).is_ok());
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let mut v = vec![json!("!"); MAX_TERMS - 1];
    v.push(json!(["id", "=", 1]));
    let e = Domain::from_json(&Value::Array(v)).unwrap_err();
    assert!(e.message().contains("nested deeper"), "{e}");
    // Long chains of one operator are flattened and accepted.
    let mut v = vec![json!("|"); 499];
    v.extend(std::iter::repeat_n(json!(["id", "=", 1]), 500));
    let dom = Domain::from_json(&Value::Array(v)).unwrap();
    assert!(matches!(dom.root(), Node::Or(xs) if xs.len() == 500));
    // Alternating operators nest for real.
    let mut v = Vec::new();
    for i in 0..300 {
        v.push(json!(if i % 2 == 0 { "&" } else { "|" }));
        v.push(json!(["id", "=", 1]));
    }
    v.push(json!(["id", "=", 1]));
    assert!(Domain::from_json(&Value::Array(v)).is_err());
}

#[test]
fn filter_error_is_a_proper_error() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<FilterError>();
    let e: crate::DomainError = err(json!([["foo", "=", 1]])).into();
    assert!(e.to_string().contains("unknown field"));
}

#[test]
fn null_semantics_follow_odoo() {
    let r = person(); // gender NULL, given_name "Ana"
    let t = |v: Value| m(v, &r, &[]);
    // = / != false
    assert!(t(json!([["gender", "=", false]])));
    assert!(t(json!([["gender", "=", null]])));
    assert!(!t(json!([["gender", "!=", false]])));
    assert!(t(json!([["given_name", "!=", false]])));
    // != v and not in include NULL; =, <, like exclude it.
    assert!(t(json!([["gender", "!=", "f"]])));
    assert!(!t(json!([["gender", "=", "f"]])));
    assert!(!t(json!([["gender", "<", "z"]])));
    assert!(!t(json!([["gender", ">", ""]])));
    assert!(!t(json!([["gender", "like", "f"]])));
    assert!(!t(json!([["gender", "ilike", "f"]])));
    assert!(!t(json!([["gender", "=like", "%"]])));
    assert!(t(json!([["gender", "not like", "f"]])));
    assert!(t(json!([["gender", "not ilike", "f"]])));
    assert!(t(json!([["gender", "not in", ["f"]]])));
    assert!(!t(json!([["gender", "in", ["f"]]])));
    // false inside the list
    assert!(t(json!([["gender", "in", ["f", false]]])));
    assert!(!t(json!([["gender", "not in", ["f", false]]])));
    assert!(t(json!([["given_name", "not in", ["f", false]]])));
    assert!(!t(json!([["given_name", "not in", ["Ana", false]]])));
    // empty lists
    assert!(!t(json!([["given_name", "in", []]])));
    assert!(t(json!([["gender", "not in", []]])));
    // Odoo's empty like
    assert!(t(json!([["gender", "like", ""]])));
    assert!(!t(json!([["gender", "not like", ""]])));
    assert!(!t(json!([["given_name", "not ilike", ""]])));
}

#[test]
fn negation_distributes_like_odoo() {
    let r = person(); // gender NULL
    let t = |v: Value| m(v, &r, &[]);
    // ! of an operator with an opposite flips it: `!(<)` is `>=`, which excludes NULL...
    assert!(!t(json!(["!", ["gender", "<", "m"]])));
    // ... while `!(=)` is `!=`, which includes it.
    assert!(t(json!(["!", ["gender", "=", "m"]])));
    // =like has no opposite: SQL NOT, never true on NULL.
    assert!(!t(json!(["!", ["gender", "=like", "m"]])));
    assert!(t(json!(["!", ["given_name", "=like", "B%"]])));
    assert!(!t(json!(["!", ["given_name", "=like", "A%"]])));
    // De Morgan
    assert!(t(json!(["!", "&", ["id", "=", 7], ["name", "=", "x"]])));
    assert!(!t(json!(["!", "|", ["id", "=", 7], ["name", "=", "x"]])));
    assert!(t(json!(["!", "!", ["id", "=", 7]])));
    assert!(!t(json!(["!", [1, "=", 1]])));
}

#[test]
fn booleans_and_constants() {
    let mut r = person();
    r.disabled = false;
    let t = |v: Value, r: &Registrant| m(v, r, &[]);
    // boolean false is a value, not NULL
    assert!(t(json!([["disabled", "=", false]]), &r));
    assert!(!t(json!([["disabled", "!=", false]]), &r));
    assert!(t(json!([["disabled", "=", null]]), &r));
    assert!(t(json!([["disabled", "in", [true, false]]]), &r));
    assert!(!t(json!([["disabled", "not in", [false]]]), &r));
    r.disabled = true;
    assert!(t(json!([["disabled", "=", true]]), &r));
    assert!(t(json!([["is_registrant", "=", true]]), &r));
    assert!(!t(json!([["is_registrant", "=", false]]), &r));
    assert!(!t(json!(["!", ["is_registrant", "=", true]]), &r));
    assert!(t(json!([[1, "=", 1]]), &r));
    assert!(!t(json!([[0, "=", 1]]), &r));
}

#[test]
fn reg_ids_paths_mean_some_id() {
    let r = person();
    let ids = [id("MOSIP VID", "123"), id("PHONE", "555")];
    let t = |v: Value, ids: &[RegId]| m(v, &r, ids);
    assert!(t(json!([["reg_ids.id_type", "=", "PHONE"]]), &ids));
    // Negative operator inside the path: some ID whose type is not MOSIP VID.
    assert!(t(json!([["reg_ids.id_type", "!=", "MOSIP VID"]]), &ids));
    assert!(!t(
        json!([["reg_ids.id_type", "!=", "MOSIP VID"]]),
        &ids[..1]
    ));
    // `!` negates the whole path: no ID of that type.
    assert!(!t(json!(["!", ["reg_ids.id_type", "=", "PHONE"]]), &ids));
    assert!(t(
        json!(["!", ["reg_ids.id_type", "=", "PHONE"]]),
        &ids[..1]
    ));
    assert!(t(json!(["!", ["reg_ids.id_type", "=", "PHONE"]]), &[]));
    assert!(t(json!([["reg_ids.value", "like", "2"]]), &ids));
    assert!(t(json!([["reg_ids.status", "=", "valid"]]), &ids));
    assert!(t(json!([["reg_ids.expiry_date", "=", false]]), &ids));
    assert!(!t(
        json!([["reg_ids.expiry_date", "<", "2030-01-01"]]),
        &ids
    ));
    assert!(t(json!([["reg_ids.description", "!=", "x"]]), &ids));
    assert!(!t(json!([["reg_ids.description", "!=", "x"]]), &[]));
    // bare reg_ids
    assert!(t(json!([["reg_ids", "=", false]]), &[]));
    assert!(!t(json!([["reg_ids", "=", false]]), &ids));
    assert!(t(json!([["reg_ids", "!=", false]]), &ids));
    assert!(t(json!(["!", ["reg_ids", "!=", false]]), &[]));
}

#[test]
fn attributes_compare_by_json_type() {
    let mut r = person();
    r.attributes = serde_json::from_value(json!({
        "size": 3, "ratio": 2.5, "town": "Mogadishu", "head": true, "off": false,
        "nothing": null, "list": [1]
    }))
    .unwrap();
    let t = |v: Value| m(v, &r, &[]);
    assert!(t(json!([["attributes.size", "=", 3]])));
    assert!(t(json!([["attributes.size", "=", 3.0]])));
    assert!(t(json!([["attributes.size", ">", 2.5]])));
    assert!(t(json!([["attributes.ratio", "<", 3]])));
    assert!(t(json!([["attributes.town", "=like", "Moga%"]])));
    assert!(t(json!([["attributes.town", "ilike", "GADI"]])));
    assert!(t(json!([["attributes.head", "=", true]])));
    assert!(t(json!([["attributes.off", "=", false]])));
    // a different JSON type behaves as NULL: no positive match, != and not in match
    assert!(!t(json!([["attributes.size", "=", "3"]])));
    assert!(t(json!([["attributes.size", "!=", "3"]])));
    assert!(t(json!([["attributes.size", "not in", ["3"]]])));
    assert!(!t(json!([["attributes.town", ">", 1]])));
    assert!(!t(json!([["attributes.off", "=", 0]])));
    assert!(t(json!([["attributes.list", "!=", 1]])));
    // missing or null
    assert!(t(json!([["attributes.missing", "=", null]])));
    assert!(t(json!([["attributes.nothing", "=", null]])));
    assert!(!t(json!([["attributes.list", "=", null]])));
    assert!(!t(json!([["attributes.missing", "=", 1]])));
    assert!(t(json!([["attributes.missing", "!=", 1]])));
    assert!(t(json!([["attributes.missing", "in", [1, null]]])));
    assert!(!t(json!([["attributes.size", "in", [1, null]]])));
    assert!(!t(json!([["attributes.missing", "not in", [1, null]]])));
    assert!(t(json!([["attributes.size", "!=", null]])));
}

#[test]
fn like_matching() {
    assert!(like_match("abc", "%b%", false));
    assert!(like_match("abc", "a_c", false));
    assert!(!like_match("abc", "a_", false));
    assert!(like_match("abc", "%", false));
    assert!(like_match("", "%", false));
    assert!(!like_match("", "_", false));
    assert!(like_match("aXbXc", "a%b%c", false));
    assert!(!like_match("ABC", "abc", false));
    assert!(like_match("ABC", "abc", true));
    assert!(like_match("a%c", "a\\%c", false));
    assert!(!like_match("abc", "a\\%c", false));
    assert!(like_match("a_c", "a\\_c", false));
    assert!(like_match("a\\c", "a\\\\c", false));
    assert!(like_match("mississippi", "%iss%ipp_", false));
    assert!(!like_match("mississippi", "%iss%ipp", false));
    // ASCII folding only
    assert!(!like_match("É", "é", true));
}

#[test]
fn dates_and_datetimes() {
    let r = person(); // born 1990-05-17, created 2024-01-02 03:04:05
    let t = |v: Value| m(v, &r, &[]);
    assert!(t(json!([["birthdate", "=", "1990-05-17"]])));
    assert!(t(json!([["birthdate", "<", "1990-05-18"]])));
    assert!(t(json!([["create_date", "=", "2024-01-02 03:04:05"]])));
    assert!(t(json!([["create_date", "=", "2024-01-02T03:04:05Z"]])));
    assert!(t(json!([[
        "create_date",
        "=",
        "2024-01-02T05:04:05+02:00"
    ]])));
    assert!(t(json!([["create_date", ">", "2024-01-02"]])));
    assert!(t(json!([[
        "write_date",
        "<",
        "2024-01-02 03:04:05.000001"
    ]])));
    assert!(!t(json!([[
        "updated_at",
        "<",
        "2024-01-02 03:04:05.0000009"
    ]])));
    for bad in ["1990-5-17", "17/05/1990", "+1990-05-17", "0000-01-01", ""] {
        let e = err(json!([["birthdate", "=", bad]]));
        assert_eq!(
            (e.position(), e.element()),
            (Some(0), Some(Element::Value)),
            "{bad}"
        );
    }
}
