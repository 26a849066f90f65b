//! Registrants (individuals and groups), their typed IDs, memberships and bank accounts.
//!
//! Raw inputs (`*Input`, as received from the API, a CSV row or an NDJSON line) are parsed once
//! into validated values (`New*`); nothing past the edge handles unvalidated strings.

use chrono::{DateTime, NaiveDate, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DomainError, FieldErrors};

/// ID types every registry starts with; connectors look them up by name.
pub const SEED_ID_TYPES: &[&str] = &[
    "MOSIP UIN",
    "MOSIP VID",
    "MOSIP AUTH TOKEN",
    // OpenG2P's connectors and their default filters name the token type this way; keeping it lets
    // existing filters carry over unchanged.
    "MOSIP UIN TOKEN",
    "ODK INSTANCE ID",
    "NATIONAL ID",
    "PHONE",
];

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_TEXT_LEN: usize = 2000;
pub const MAX_ID_VALUE_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdStatus {
    Valid,
    Invalid,
}

impl IdStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IdStatus::Valid => "valid",
            IdStatus::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "valid" => Some(IdStatus::Valid),
            "invalid" => Some(IdStatus::Invalid),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhoneNumber {
    pub phone_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_collected: Option<NaiveDate>,
}

/// A stored registrant. `name` is the display name: for individuals it is composed as
/// "FAMILY, GIVEN ADDL" like OpenG2P does, unless one was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registrant {
    pub id: i64,
    pub external_key: Option<String>,
    pub is_group: bool,
    pub name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub addl_name: Option<String>,
    pub gender: Option<String>,
    pub birthdate: Option<NaiveDate>,
    pub birthdate_not_exact: bool,
    pub birth_place: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub phone_numbers: Vec<PhoneNumber>,
    pub email: Option<String>,
    pub registration_date: Option<NaiveDate>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub group_kind: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdType {
    pub id: i64,
    pub name: String,
    pub validation_regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegId {
    pub id: i64,
    pub registrant_id: i64,
    pub id_type_id: i64,
    /// The ID type's name, e.g. "MOSIP VID".
    pub id_type: String,
    pub value: String,
    pub expiry_date: Option<NaiveDate>,
    pub status: IdStatus,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BankAccount {
    pub id: i64,
    pub registrant_id: i64,
    pub account_number: String,
    pub iban: Option<String>,
    pub bank_code: Option<String>,
    pub bic: Option<String>,
    pub account_holder_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    pub id: i64,
    pub group_id: i64,
    pub individual_id: i64,
    /// Membership kinds, e.g. `["head"]`.
    pub kinds: Vec<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<i64>,
    pub registrant_id: Option<i64>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub before: Option<Value>,
    #[schema(value_type = Object)]
    pub after: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// A registrant as received (API body, CSV row, NDJSON line). Unknown keys are rejected so that
/// a typo does not silently drop data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrantInput {
    /// Caller's key for idempotent imports: a second import with the same key updates nothing
    /// and creates nothing.
    #[serde(default)]
    pub external_key: Option<String>,
    #[serde(default)]
    pub is_group: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub addl_name: Option<String>,
    #[serde(default)]
    pub gender: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub birthdate: Option<String>,
    #[serde(default)]
    pub birthdate_not_exact: bool,
    #[serde(default)]
    pub birth_place: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub phone_numbers: Vec<PhoneNumberInput>,
    #[serde(default)]
    pub email: Option<String>,
    /// `YYYY-MM-DD`; defaults to today.
    #[serde(default)]
    pub registration_date: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub group_kind: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub ids: Vec<RegIdInput>,
    #[serde(default)]
    pub bank_accounts: Vec<BankAccountInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberInput {
    pub phone_no: String,
    #[serde(default)]
    pub date_collected: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegIdInput {
    /// ID type name, matched case-insensitively.
    pub id_type: String,
    pub value: String,
    #[serde(default)]
    pub expiry_date: Option<String>,
    #[serde(default)]
    pub status: Option<IdStatus>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankAccountInput {
    pub account_number: String,
    #[serde(default)]
    pub iban: Option<String>,
    #[serde(default)]
    pub bank_code: Option<String>,
    #[serde(default)]
    pub bic: Option<String>,
    #[serde(default)]
    pub account_holder_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdTypeInput {
    pub name: String,
    #[serde(default)]
    pub validation_regex: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipInput {
    pub individual_id: i64,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated values
// ---------------------------------------------------------------------------------------------

/// Registrant fields after validation. IDs and bank accounts are validated against ID types by
/// the store (the regex lives there), but their shape is checked here.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRegistrant {
    pub external_key: Option<String>,
    pub is_group: bool,
    pub name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub addl_name: Option<String>,
    pub gender: Option<String>,
    pub birthdate: Option<NaiveDate>,
    pub birthdate_not_exact: bool,
    pub birth_place: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub phone_numbers: Vec<PhoneNumber>,
    pub email: Option<String>,
    pub registration_date: NaiveDate,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub group_kind: Option<String>,
    pub attributes: Map<String, Value>,
    pub ids: Vec<NewRegId>,
    pub bank_accounts: Vec<NewBankAccount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRegId {
    pub id_type: String,
    pub value: String,
    pub expiry_date: Option<NaiveDate>,
    pub status: IdStatus,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewBankAccount {
    pub account_number: String,
    pub iban: Option<String>,
    pub bank_code: Option<String>,
    pub bic: Option<String>,
    pub account_holder_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewIdType {
    pub name: String,
    pub validation_regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMembership {
    pub individual_id: i64,
    pub kinds: Vec<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

/// Trims, and turns blank strings into `None`: forms and CSV files send "" for "not given".
fn clean(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn check_len(errors: &mut FieldErrors, field: &str, v: &Option<String>, max: usize) {
    if let Some(v) = v
        && v.chars().count() > max
    {
        errors.add(field, format!("must be at most {max} characters"));
    }
}

pub fn parse_date(errors: &mut FieldErrors, field: &str, v: &Option<String>) -> Option<NaiveDate> {
    let v = clean(v)?;
    match NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            errors.add(field, "must be a date as YYYY-MM-DD");
            None
        }
    }
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

fn valid_phone(p: &str) -> bool {
    let digits = p.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && p.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
}

/// OpenG2P composes an individual's display name as "FAMILY, GIVEN ADDL", upper-cased.
pub fn compose_name(family: Option<&str>, given: Option<&str>, addl: Option<&str>) -> String {
    let rest: Vec<&str> = [given, addl].into_iter().flatten().collect();
    let rest = rest.join(" ");
    let name = match (family, rest.is_empty()) {
        (Some(f), false) => format!("{f}, {rest}"),
        (Some(f), true) => f.to_owned(),
        (None, _) => rest,
    };
    name.to_uppercase()
}

impl RegistrantInput {
    /// Validates every field and reports all problems at once.
    pub fn parse(&self, today: NaiveDate) -> Result<NewRegistrant, DomainError> {
        let mut errors = FieldErrors::new();
        let given_name = clean(&self.given_name);
        let family_name = clean(&self.family_name);
        let addl_name = clean(&self.addl_name);
        for (f, v) in [
            ("given_name", &given_name),
            ("family_name", &family_name),
            ("addl_name", &addl_name),
        ] {
            check_len(&mut errors, f, v, MAX_NAME_LEN);
        }
        let name = match clean(&self.name) {
            Some(n) => Some(n),
            None if !self.is_group => {
                let n = compose_name(
                    family_name.as_deref(),
                    given_name.as_deref(),
                    addl_name.as_deref(),
                );
                (!n.is_empty()).then_some(n)
            }
            None => None,
        };
        let name = match name {
            Some(n) => n,
            None => {
                if self.is_group {
                    errors.add("name", "is required for a group");
                } else {
                    errors.add(
                        "given_name",
                        "a name, or a given or family name, is required",
                    );
                }
                String::new()
            }
        };
        check_len(&mut errors, "name", &Some(name.clone()), MAX_NAME_LEN);

        let birthdate = parse_date(&mut errors, "birthdate", &self.birthdate);
        if let Some(b) = birthdate
            && b > today
        {
            errors.add("birthdate", "cannot be in the future");
        }
        let registration_date =
            parse_date(&mut errors, "registration_date", &self.registration_date).unwrap_or(today);
        if registration_date > today {
            errors.add("registration_date", "cannot be in the future");
        }
        // A future birth date is reported once, on `birthdate`, not again here.
        if let Some(b) = birthdate.filter(|b| *b <= today)
            && registration_date < b
        {
            errors.add("registration_date", "cannot be before the birth date");
        }
        let email = clean(&self.email);
        if let Some(e) = &email
            && !valid_email(e)
        {
            errors.add("email", "is not a valid e-mail address");
        }
        check_len(&mut errors, "email", &email, MAX_NAME_LEN);
        let gender = clean(&self.gender);
        check_len(&mut errors, "gender", &gender, 50);
        let birth_place = clean(&self.birth_place);
        check_len(&mut errors, "birth_place", &birth_place, MAX_NAME_LEN);
        let address = clean(&self.address);
        check_len(&mut errors, "address", &address, MAX_TEXT_LEN);
        let disabled_reason = clean(&self.disabled_reason);
        check_len(
            &mut errors,
            "disabled_reason",
            &disabled_reason,
            MAX_TEXT_LEN,
        );
        let external_key = clean(&self.external_key);
        check_len(&mut errors, "external_key", &external_key, MAX_NAME_LEN);
        let group_kind = clean(&self.group_kind);
        if group_kind.is_some() && !self.is_group {
            errors.add("group_kind", "only a group has a kind");
        }

        let mut phone_numbers = Vec::with_capacity(self.phone_numbers.len());
        for (i, p) in self.phone_numbers.iter().enumerate() {
            let field = format!("phone_numbers[{i}]");
            let no = p.phone_no.trim();
            if !valid_phone(no) {
                errors.add(
                    format!("{field}.phone_no"),
                    "must be 5 to 20 digits, optionally with + - ( ) . and spaces",
                );
            }
            let date_collected = parse_date(
                &mut errors,
                &format!("{field}.date_collected"),
                &p.date_collected,
            );
            phone_numbers.push(PhoneNumber {
                phone_no: no.to_owned(),
                date_collected,
            });
        }

        let mut ids: Vec<NewRegId> = Vec::with_capacity(self.ids.len());
        for (i, id) in self.ids.iter().enumerate() {
            // Checked on the raw types, so that a duplicate is reported even when an ID also
            // has a bad value.
            let id_type = id.id_type.trim();
            if !id_type.is_empty()
                && self.ids[..i]
                    .iter()
                    .any(|o| o.id_type.trim().eq_ignore_ascii_case(id_type))
            {
                errors.add(
                    format!("ids[{i}].id_type"),
                    "a registrant has at most one ID of each type",
                );
            }
            match id.parse() {
                Ok(v) => ids.push(v),
                Err(DomainError::Validation(e)) => errors.merge(e.nest(&format!("ids[{i}]"))),
                Err(e) => errors.add(format!("ids[{i}]"), e.to_string()),
            }
        }
        let mut bank_accounts = Vec::with_capacity(self.bank_accounts.len());
        for (i, b) in self.bank_accounts.iter().enumerate() {
            match b.parse() {
                Ok(v) => bank_accounts.push(v),
                Err(DomainError::Validation(e)) => {
                    errors.merge(e.nest(&format!("bank_accounts[{i}]")))
                }
                Err(e) => errors.add(format!("bank_accounts[{i}]"), e.to_string()),
            }
        }
        errors.into_result()?;
        Ok(NewRegistrant {
            external_key,
            is_group: self.is_group,
            name,
            given_name,
            family_name,
            addl_name,
            gender,
            birthdate,
            birthdate_not_exact: self.birthdate_not_exact,
            birth_place,
            address,
            phone: phone_numbers.first().map(|p| p.phone_no.clone()),
            phone_numbers,
            email,
            registration_date,
            disabled: self.disabled,
            disabled_reason,
            group_kind,
            attributes: self.attributes.clone(),
            ids,
            bank_accounts,
        })
    }
}

impl RegIdInput {
    pub fn parse(&self) -> Result<NewRegId, DomainError> {
        let mut errors = FieldErrors::new();
        let id_type = self.id_type.trim().to_owned();
        if id_type.is_empty() {
            errors.add("id_type", "is required");
        }
        let value = self.value.trim().to_owned();
        if value.is_empty() {
            errors.add("value", "is required");
        } else if value.chars().count() > MAX_ID_VALUE_LEN {
            errors.add(
                "value",
                format!("must be at most {MAX_ID_VALUE_LEN} characters"),
            );
        }
        let expiry_date = parse_date(&mut errors, "expiry_date", &self.expiry_date);
        let description = clean(&self.description);
        check_len(&mut errors, "description", &description, MAX_TEXT_LEN);
        errors.into_result()?;
        Ok(NewRegId {
            id_type,
            value,
            expiry_date,
            status: self.status.unwrap_or(IdStatus::Valid),
            description,
        })
    }
}

impl BankAccountInput {
    pub fn parse(&self) -> Result<NewBankAccount, DomainError> {
        let mut errors = FieldErrors::new();
        let account_number = self.account_number.trim().to_owned();
        if account_number.is_empty() {
            errors.add("account_number", "is required");
        }
        check_len(
            &mut errors,
            "account_number",
            &Some(account_number.clone()),
            64,
        );
        let iban = clean(&self.iban).map(|s| s.replace(' ', "").to_uppercase());
        if let Some(iban) = &iban
            && !valid_iban(iban)
        {
            errors.add("iban", "is not a valid IBAN");
        }
        let bic = clean(&self.bic).map(|s| s.to_uppercase());
        if let Some(bic) = &bic {
            let ok = (bic.len() == 8 || bic.len() == 11)
                && bic.chars().all(|c| c.is_ascii_alphanumeric())
                && bic[..6].chars().all(|c| c.is_ascii_alphabetic());
            if !ok {
                errors.add("bic", "must be 8 or 11 letters and digits (ISO 9362)");
            }
        }
        let bank_code = clean(&self.bank_code);
        check_len(&mut errors, "bank_code", &bank_code, 64);
        let account_holder_name = clean(&self.account_holder_name);
        check_len(
            &mut errors,
            "account_holder_name",
            &account_holder_name,
            MAX_NAME_LEN,
        );
        errors.into_result()?;
        Ok(NewBankAccount {
            account_number,
            iban,
            bank_code,
            bic,
            account_holder_name,
        })
    }
}

/// ISO 13616 check: length, country letters and the mod-97 checksum.
pub fn valid_iban(iban: &str) -> bool {
    if !(15..=34).contains(&iban.len()) || !iban.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    if !head[..2].chars().all(|c| c.is_ascii_uppercase()) {
        return false;
    }
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

impl IdTypeInput {
    pub fn parse(&self) -> Result<NewIdType, DomainError> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            errors.add("name", "is required");
        }
        check_len(&mut errors, "name", &Some(name.clone()), MAX_NAME_LEN);
        let validation_regex = clean(&self.validation_regex);
        if let Some(r) = &validation_regex
            && let Err(e) = anchored_regex(r)
        {
            errors.add(
                "validation_regex",
                format!("is not a valid regular expression: {e}"),
            );
        }
        errors.into_result()?;
        Ok(NewIdType {
            name,
            validation_regex,
        })
    }
}

/// ID validation regexes must match the whole value, as Odoo's `re.fullmatch`-style check does.
pub fn anchored_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

impl MembershipInput {
    pub fn parse(&self) -> Result<NewMembership, DomainError> {
        let mut errors = FieldErrors::new();
        let start_date = parse_date(&mut errors, "start_date", &self.start_date);
        let end_date = parse_date(&mut errors, "end_date", &self.end_date);
        if let (Some(s), Some(e)) = (start_date, end_date)
            && e < s
        {
            errors.add("end_date", "cannot be before the start date");
        }
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        errors.into_result()?;
        Ok(NewMembership {
            individual_id: self.individual_id,
            kinds,
            start_date,
            end_date,
        })
    }
}

impl RegistrantInput {
    /// The input that would recreate `r`'s own fields (not its IDs or accounts); the base onto
    /// which a JSON merge patch is applied.
    pub fn from_registrant(r: &Registrant) -> Self {
        let date = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        // A name composed from the name parts is left out, so that it is composed again from
        // the parts after a patch changes them (as a PUT without `name` does).
        let composed = compose_name(
            r.family_name.as_deref(),
            r.given_name.as_deref(),
            r.addl_name.as_deref(),
        );
        let name = (r.is_group || r.name != composed).then(|| r.name.clone());
        RegistrantInput {
            external_key: r.external_key.clone(),
            is_group: r.is_group,
            name,
            given_name: r.given_name.clone(),
            family_name: r.family_name.clone(),
            addl_name: r.addl_name.clone(),
            gender: r.gender.clone(),
            birthdate: date(r.birthdate),
            birthdate_not_exact: r.birthdate_not_exact,
            birth_place: r.birth_place.clone(),
            address: r.address.clone(),
            phone_numbers: r
                .phone_numbers
                .iter()
                .map(|p| PhoneNumberInput {
                    phone_no: p.phone_no.clone(),
                    date_collected: date(p.date_collected),
                })
                .collect(),
            email: r.email.clone(),
            registration_date: date(r.registration_date),
            disabled: r.disabled,
            disabled_reason: r.disabled_reason.clone(),
            group_kind: r.group_kind.clone(),
            attributes: r.attributes.clone(),
            ids: Vec::new(),
            bank_accounts: Vec::new(),
        }
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
    }

    #[test]
    fn composes_name_like_openg2p() {
        let r = RegistrantInput {
            given_name: Some("Ana".into()),
            family_name: Some("Diaz".into()),
            addl_name: Some("Maria".into()),
            ..Default::default()
        }
        .parse(today())
        .unwrap();
        assert_eq!(r.name, "DIAZ, ANA MARIA");
    }

    #[test]
    fn reports_every_bad_field() {
        let err = RegistrantInput {
            birthdate: Some("31/01/1990".into()),
            email: Some("nope".into()),
            registration_date: Some("2999-01-01".into()),
            ids: vec![
                RegIdInput {
                    id_type: "MOSIP VID".into(),
                    value: "1".into(),
                    ..Default::default()
                },
                RegIdInput {
                    id_type: "mosip vid".into(),
                    value: "".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
        .parse(today())
        .unwrap_err();
        let DomainError::Validation(f) = err else {
            panic!("not a validation error")
        };
        for k in [
            "birthdate",
            "email",
            "registration_date",
            "given_name",
            "ids[1].id_type",
            "ids[1].value",
        ] {
            assert!(f.0.contains_key(k), "missing {k} in {f:?}");
        }
    }

    #[test]
    fn iban_checksum() {
        assert!(valid_iban("GB82WEST12345698765432"));
        assert!(!valid_iban("GB82WEST12345698765433"));
        assert!(
            BankAccountInput {
                account_number: "1".into(),
                iban: Some("gb82 west 1234 5698 7654 32".into()),
                ..Default::default()
            }
            .parse()
            .is_ok()
        );
    }

    #[test]
    fn id_regex_is_anchored() {
        let r = anchored_regex("[0-9]{4}").unwrap();
        assert!(r.is_match("1234"));
        assert!(!r.is_match("12345"));
    }
}
