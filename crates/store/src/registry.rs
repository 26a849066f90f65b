//! Registrants, typed IDs, ID types, memberships and bank accounts. Every change writes its audit
//! entry in the same transaction.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use g2p_domain::filter::Domain;
use g2p_domain::{
    BankAccount, FieldErrors, IdStatus, IdType, Membership, NewBankAccount, NewIdType,
    NewMembership, NewRegId, NewRegistrant, PhoneNumber, RegId, Registrant, SEED_ID_TYPES,
    anchored_regex,
};
use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::audit::Actor;
use crate::error::{Result, StoreError};
use crate::{Store, audit_insert, bind_values, with_db};

/// One page of a keyset-paginated listing. `next_after` is the cursor for the following page.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<i64>,
}

/// A registrant with everything attached to it, for detail views.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrantDetail {
    #[serde(flatten)]
    pub registrant: Registrant,
    pub ids: Vec<RegId>,
    pub bank_accounts: Vec<BankAccount>,
    /// For a group, its members; for an individual, the groups it belongs to.
    pub memberships: Vec<Membership>,
}

/// ID types by lower-cased name, with their compiled validation regex. Loaded once per
/// operation (or once per import chunk) rather than per ID.
#[derive(Debug, Clone, Default)]
pub struct IdTypeSet {
    by_name: HashMap<String, (IdType, Option<Regex>)>,
}

impl IdTypeSet {
    pub fn get(&self, name: &str) -> Option<&IdType> {
        self.by_name.get(&name.to_lowercase()).map(|(t, _)| t)
    }

    /// Resolves and validates the IDs of one registrant; problems are reported under
    /// `ids[i].…`.
    pub fn check(&self, ids: &[NewRegId]) -> std::result::Result<Vec<i64>, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            match self.by_name.get(&id.id_type.to_lowercase()) {
                None => errors.add(
                    format!("ids[{i}].id_type"),
                    format!("unknown ID type {:?}", id.id_type),
                ),
                Some((t, re)) => {
                    if let Some(re) = re
                        && !re.is_match(&id.value)
                    {
                        errors.add(
                            format!("ids[{i}].value"),
                            format!("does not match the format of {}", t.name),
                        );
                    }
                    out.push(t.id);
                }
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RegistrantRow {
    id: i64,
    external_key: Option<String>,
    is_group: bool,
    name: String,
    given_name: Option<String>,
    family_name: Option<String>,
    addl_name: Option<String>,
    gender: Option<String>,
    birthdate: Option<NaiveDate>,
    birthdate_not_exact: bool,
    birth_place: Option<String>,
    address: Option<String>,
    phone: Option<String>,
    phone_numbers: Json<Vec<PhoneNumber>>,
    email: Option<String>,
    registration_date: Option<NaiveDate>,
    disabled: bool,
    disabled_reason: Option<String>,
    group_kind: Option<String>,
    attributes: Json<Map<String, Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<RegistrantRow> for Registrant {
    fn from(r: RegistrantRow) -> Self {
        Registrant {
            id: r.id,
            external_key: r.external_key,
            is_group: r.is_group,
            name: r.name,
            given_name: r.given_name,
            family_name: r.family_name,
            addl_name: r.addl_name,
            gender: r.gender,
            birthdate: r.birthdate,
            birthdate_not_exact: r.birthdate_not_exact,
            birth_place: r.birth_place,
            address: r.address,
            phone: r.phone,
            phone_numbers: r.phone_numbers.0,
            email: r.email,
            registration_date: r.registration_date,
            disabled: r.disabled,
            disabled_reason: r.disabled_reason,
            group_kind: r.group_kind,
            attributes: r.attributes.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }
}

pub(crate) const REGISTRANT_COLUMNS: &str = "r.id, r.external_key, r.is_group, r.name, \
    r.given_name, r.family_name, r.addl_name, r.gender, r.birthdate, r.birthdate_not_exact, \
    r.birth_place, r.address, r.phone, r.phone_numbers, r.email, r.registration_date, r.disabled, \
    r.disabled_reason, r.group_kind, r.attributes, r.created_at, r.updated_at, r.version";

const SELECT_REGISTRANT: &str = "SELECT r.id, r.external_key, r.is_group, r.name, \
    r.given_name, r.family_name, r.addl_name, r.gender, r.birthdate, r.birthdate_not_exact, \
    r.birth_place, r.address, r.phone, r.phone_numbers, r.email, r.registration_date, r.disabled, \
    r.disabled_reason, r.group_kind, r.attributes, r.created_at, r.updated_at, r.version \
    FROM registrants r WHERE r.id = $1";

pub(crate) const INSERT_REGISTRANT: &str = "INSERT INTO registrants (external_key, is_group, \
    name, given_name, family_name, addl_name, gender, birthdate, birthdate_not_exact, \
    birth_place, address, phone, phone_numbers, email, registration_date, disabled, \
    disabled_reason, group_kind, attributes, created_at, updated_at, version) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
    $19, $20, $20, 1) RETURNING id";

/// Binds like [`INSERT_REGISTRANT`] after the id (`$1`), so both share
/// `bind_registrant_fields!`; `is_group` is rewritten with the value it already has (checked by
/// the caller).
const UPDATE_REGISTRANT: &str = "UPDATE registrants SET external_key = $2, is_group = $3, \
    name = $4, given_name = $5, family_name = $6, addl_name = $7, gender = $8, birthdate = $9, \
    birthdate_not_exact = $10, birth_place = $11, address = $12, phone = $13, \
    phone_numbers = $14, email = $15, registration_date = $16, disabled = $17, \
    disabled_reason = $18, group_kind = $19, attributes = $20, updated_at = $21, \
    version = version + 1 WHERE id = $1 AND ($22 IS NULL OR version = $22)";

pub(crate) const INSERT_REG_ID: &str = "INSERT INTO reg_ids (registrant_id, id_type_id, value, \
    expiry_date, status, description, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id";

pub(crate) const INSERT_BANK_ACCOUNT: &str = "INSERT INTO bank_accounts (registrant_id, \
    account_number, iban, bank_code, bic, account_holder_name, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

const SELECT_REG_IDS: &str = "SELECT ri.id, ri.registrant_id, ri.id_type_id, t.name AS id_type, \
    ri.value, ri.expiry_date, ri.status, ri.description, ri.updated_at \
    FROM reg_ids ri JOIN id_types t ON t.id = ri.id_type_id WHERE ri.registrant_id = $1 \
    ORDER BY t.name";

const SELECT_BANK_ACCOUNTS: &str = "SELECT id, registrant_id, account_number, iban, bank_code, \
    bic, account_holder_name, created_at FROM bank_accounts WHERE registrant_id = $1 ORDER BY id";

const SELECT_MEMBERSHIPS: &str = "SELECT id, group_id, individual_id, kinds, start_date, \
    end_date FROM memberships WHERE group_id = $1 OR individual_id = $1 ORDER BY id";

/// Binds the 19 registrant columns (`$k`..`$k+18` in the order of [`INSERT_REGISTRANT`]).
macro_rules! bind_registrant_fields {
    ($q:expr, $r:expr) => {
        $q.bind($r.external_key.as_deref())
            .bind($r.is_group)
            .bind($r.name.as_str())
            .bind($r.given_name.as_deref())
            .bind($r.family_name.as_deref())
            .bind($r.addl_name.as_deref())
            .bind($r.gender.as_deref())
            .bind($r.birthdate)
            .bind($r.birthdate_not_exact)
            .bind($r.birth_place.as_deref())
            .bind($r.address.as_deref())
            .bind($r.phone.as_deref())
            .bind(Json(&$r.phone_numbers))
            .bind($r.email.as_deref())
            .bind($r.registration_date)
            .bind($r.disabled)
            .bind($r.disabled_reason.as_deref())
            .bind($r.group_kind.as_deref())
            .bind(Json(&$r.attributes))
    };
}

#[derive(sqlx::FromRow)]
struct RegIdRow {
    id: i64,
    registrant_id: i64,
    id_type_id: i64,
    id_type: String,
    value: String,
    expiry_date: Option<NaiveDate>,
    status: String,
    description: Option<String>,
    updated_at: DateTime<Utc>,
}

impl From<RegIdRow> for RegId {
    fn from(r: RegIdRow) -> Self {
        RegId {
            id: r.id,
            registrant_id: r.registrant_id,
            id_type_id: r.id_type_id,
            id_type: r.id_type,
            value: r.value,
            expiry_date: r.expiry_date,
            // The CHECK constraint allows only these two values.
            status: IdStatus::parse(&r.status).unwrap_or(IdStatus::Invalid),
            description: r.description,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct BankAccountRow {
    id: i64,
    registrant_id: i64,
    account_number: String,
    iban: Option<String>,
    bank_code: Option<String>,
    bic: Option<String>,
    account_holder_name: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<BankAccountRow> for BankAccount {
    fn from(r: BankAccountRow) -> Self {
        BankAccount {
            id: r.id,
            registrant_id: r.registrant_id,
            account_number: r.account_number,
            iban: r.iban,
            bank_code: r.bank_code,
            bic: r.bic,
            account_holder_name: r.account_holder_name,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    id: i64,
    group_id: i64,
    individual_id: i64,
    kinds: Json<Vec<String>>,
    start_date: Option<NaiveDate>,
    end_date: Option<NaiveDate>,
}

impl From<MembershipRow> for Membership {
    fn from(r: MembershipRow) -> Self {
        Membership {
            id: r.id,
            group_id: r.group_id,
            individual_id: r.individual_id,
            kinds: r.kinds.0,
            start_date: r.start_date,
            end_date: r.end_date,
        }
    }
}

#[derive(sqlx::FromRow)]
struct IdTypeRow {
    id: i64,
    name: String,
    validation_regex: Option<String>,
}

impl From<IdTypeRow> for IdType {
    fn from(r: IdTypeRow) -> Self {
        IdType {
            id: r.id,
            name: r.name,
            validation_regex: r.validation_regex,
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}

impl Store {
    // ------------------------------------------------------------------ ID types

    /// Creates the standard ID types that are missing; existing ones are left as they are.
    pub(crate) async fn seed_id_types(&self) -> Result<()> {
        const SQL: &str = "INSERT INTO id_types (name, validation_regex, created_at) \
            SELECT $1, NULL, $2 WHERE NOT EXISTS \
            (SELECT 1 FROM id_types WHERE lower(name) = lower($1))";
        let now = Utc::now();
        with_db!(self, write, p => {
            for name in SEED_ID_TYPES {
                sqlx::query(SQL).bind(*name).bind(now).execute(p).await?;
            }
        });
        Ok(())
    }

    pub async fn list_id_types(&self) -> Result<Vec<IdType>> {
        const SQL: &str = "SELECT id, name, validation_regex FROM id_types ORDER BY name";
        let rows: Vec<IdTypeRow> =
            with_db!(self, read, p => sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn get_id_type(&self, id: i64) -> Result<IdType> {
        const SQL: &str = "SELECT id, name, validation_regex FROM id_types WHERE id = $1";
        let row: Option<IdTypeRow> =
            with_db!(self, read, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await?);
        row.map(Into::into).ok_or(StoreError::not_found("ID type"))
    }

    /// All ID types with their compiled regexes.
    pub async fn load_id_types(&self) -> Result<IdTypeSet> {
        let mut by_name = HashMap::new();
        for t in self.list_id_types().await? {
            // A stored regex was validated when saved; one that no longer compiles (e.g. after a
            // regex engine change) is treated as "no constraint" rather than blocking all writes.
            let re = t
                .validation_regex
                .as_deref()
                .and_then(|r| anchored_regex(r).ok());
            by_name.insert(t.name.to_lowercase(), (t, re));
        }
        Ok(IdTypeSet { by_name })
    }

    pub async fn create_id_type(&self, t: &NewIdType, actor: &Actor) -> Result<IdType> {
        const SQL: &str = "INSERT INTO id_types (name, validation_regex, created_at) \
            VALUES ($1, $2, $3) RETURNING id";
        let created = with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar(SQL)
                .bind(&t.name)
                .bind(t.validation_regex.as_deref())
                .bind(Utc::now())
                .fetch_one(&mut *tx)
                .await?;
            let created = IdType { id, name: t.name.clone(), validation_regex: t.validation_regex.clone() };
            audit_insert!(&mut *tx, actor, "create", "id_type", Some(id), None::<i64>, None::<Value>, to_json(&created))?;
            tx.commit().await?;
            created
        });
        Ok(created)
    }

    /// Changing a regex does not re-check stored values; it applies to later writes.
    pub async fn update_id_type(&self, id: i64, t: &NewIdType, actor: &Actor) -> Result<IdType> {
        const SQL: &str = "UPDATE id_types SET name = $2, validation_regex = $3 WHERE id = $1";
        let before = self.get_id_type(id).await?;
        let after = IdType {
            id,
            name: t.name.clone(),
            validation_regex: t.validation_regex.clone(),
        };
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(SQL).bind(id).bind(&t.name).bind(t.validation_regex.as_deref())
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StoreError::not_found("ID type"));
            }
            audit_insert!(&mut *tx, actor, "update", "id_type", Some(id), None::<i64>, to_json(&before), to_json(&after))?;
            tx.commit().await?;
        });
        Ok(after)
    }

    /// Deletes an ID type that no registrant uses.
    pub async fn delete_id_type(&self, id: i64, actor: &Actor) -> Result<()> {
        const USED: &str = "SELECT EXISTS (SELECT 1 FROM reg_ids WHERE id_type_id = $1)";
        const SQL: &str = "DELETE FROM id_types WHERE id = $1";
        let before = self.get_id_type(id).await?;
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let used: bool = sqlx::query_scalar(USED).bind(id).fetch_one(&mut *tx).await?;
            if used {
                return Err(StoreError::Conflict {
                    field: "id".into(),
                    message: "the ID type is in use by registrants".into(),
                });
            }
            sqlx::query(SQL).bind(id).execute(&mut *tx).await?;
            audit_insert!(&mut *tx, actor, "delete", "id_type", Some(id), None::<i64>, to_json(&before), None::<Value>)?;
            tx.commit().await?;
        });
        Ok(())
    }

    // ------------------------------------------------------------------ registrants

    /// Creates a registrant with its IDs and bank accounts in one transaction.
    pub async fn create_registrant(
        &self,
        r: &NewRegistrant,
        actor: &Actor,
    ) -> Result<RegistrantDetail> {
        let types = self.load_id_types().await?;
        let type_ids = types.check(&r.ids).map_err(StoreError::Validation)?;
        let now = Utc::now();
        let detail = with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let id: i64 = bind_registrant_fields!(sqlx::query_scalar(INSERT_REGISTRANT), r)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            for (reg_id, type_id) in r.ids.iter().zip(&type_ids) {
                sqlx::query_scalar::<_, i64>(INSERT_REG_ID)
                    .bind(id)
                    .bind(*type_id)
                    .bind(&reg_id.value)
                    .bind(reg_id.expiry_date)
                    .bind(reg_id.status.as_str())
                    .bind(reg_id.description.as_deref())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            for b in &r.bank_accounts {
                sqlx::query_scalar::<_, i64>(INSERT_BANK_ACCOUNT)
                    .bind(id)
                    .bind(&b.account_number)
                    .bind(b.iban.as_deref())
                    .bind(b.bank_code.as_deref())
                    .bind(b.bic.as_deref())
                    .bind(b.account_holder_name.as_deref())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            // The audit entry, with the stored image, lands in the same transaction.
            let row: RegistrantRow = sqlx::query_as(SELECT_REGISTRANT).bind(id).fetch_one(&mut *tx).await?;
            let ids: Vec<RegIdRow> = sqlx::query_as(SELECT_REG_IDS).bind(id).fetch_all(&mut *tx).await?;
            let accounts: Vec<BankAccountRow> = sqlx::query_as(SELECT_BANK_ACCOUNTS).bind(id).fetch_all(&mut *tx).await?;
            let detail = RegistrantDetail {
                registrant: row.into(),
                ids: ids.into_iter().map(Into::into).collect(),
                bank_accounts: accounts.into_iter().map(Into::into).collect(),
                memberships: Vec::new(),
            };
            audit_insert!(&mut *tx, actor, "create", "registrant", Some(id), Some(id), None::<Value>, to_json(&detail))?;
            tx.commit().await?;
            detail
        });
        Ok(detail)
    }

    pub async fn get_registrant(&self, id: i64) -> Result<Registrant> {
        let row: Option<RegistrantRow> = with_db!(self, read, p => {
            sqlx::query_as(SELECT_REGISTRANT).bind(id).fetch_optional(p).await?
        });
        row.map(Into::into)
            .ok_or(StoreError::not_found("registrant"))
    }

    pub async fn registrant_by_external_key(&self, key: &str) -> Result<Option<Registrant>> {
        const SQL: &str = "SELECT r.id, r.external_key, r.is_group, r.name, \
            r.given_name, r.family_name, r.addl_name, r.gender, r.birthdate, \
            r.birthdate_not_exact, r.birth_place, r.address, r.phone, r.phone_numbers, r.email, \
            r.registration_date, r.disabled, r.disabled_reason, r.group_kind, r.attributes, \
            r.created_at, r.updated_at, r.version FROM registrants r WHERE r.external_key = $1";
        let row: Option<RegistrantRow> = with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(key).fetch_optional(p).await?
        });
        Ok(row.map(Into::into))
    }

    pub async fn registrant_detail(&self, id: i64) -> Result<RegistrantDetail> {
        let registrant = self.get_registrant(id).await?;
        let ids = self.list_reg_ids(id).await?;
        let (bank_accounts, memberships) = with_db!(self, read, p => {
            let b: Vec<BankAccountRow> = sqlx::query_as(SELECT_BANK_ACCOUNTS).bind(id).fetch_all(p).await?;
            let m: Vec<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIPS).bind(id).fetch_all(p).await?;
            (b, m)
        });
        Ok(RegistrantDetail {
            registrant,
            ids,
            bank_accounts: bank_accounts.into_iter().map(Into::into).collect(),
            memberships: memberships.into_iter().map(Into::into).collect(),
        })
    }

    /// Replaces a registrant's own fields (not its IDs, accounts or memberships, which have their
    /// own operations). With `expected_version`, fails with a conflict if someone else changed
    /// the registrant since it was read.
    pub async fn update_registrant(
        &self,
        id: i64,
        r: &NewRegistrant,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<Registrant> {
        let before = self.get_registrant(id).await?;
        if before.is_group != r.is_group {
            return Err(StoreError::field(
                "is_group",
                "an individual cannot become a group or the reverse",
            ));
        }
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let q = bind_registrant_fields!(sqlx::query(UPDATE_REGISTRANT).bind(id), r)
                .bind(now)
                .bind(expected_version);
            let n = q.execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StoreError::Conflict {
                    field: "version".into(),
                    message: "the registrant was changed by someone else; reload and retry".into(),
                });
            }
            let after: RegistrantRow = sqlx::query_as(SELECT_REGISTRANT).bind(id).fetch_one(&mut *tx).await?;
            let after: Registrant = after.into();
            audit_insert!(&mut *tx, actor, "update", "registrant", Some(id), Some(id), to_json(&before), to_json(&after))?;
            tx.commit().await?;
            Ok(after)
        })
    }

    /// Deletes a registrant with its IDs, accounts and memberships; the audit trail stays.
    pub async fn delete_registrant(&self, id: i64, actor: &Actor) -> Result<()> {
        const SQL: &str = "DELETE FROM registrants WHERE id = $1";
        let before = self.registrant_detail(id).await?;
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(SQL).bind(id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StoreError::not_found("registrant"));
            }
            audit_insert!(&mut *tx, actor, "delete", "registrant", Some(id), Some(id), to_json(&before), None::<Value>)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Registrants matching `domain`, ordered by id, after the keyset cursor `after`.
    pub async fn search_registrants(
        &self,
        domain: &Domain,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Page<Registrant>> {
        let (cond, mut params) = crate::filter_sql::compile(domain, self.backend(), 1);
        let n = params.len();
        let sql = format!(
            "SELECT {REGISTRANT_COLUMNS} FROM registrants r WHERE ({cond}) AND r.id > ${} \
             ORDER BY r.id LIMIT ${}",
            n + 1,
            n + 2
        );
        params.push(crate::SqlValue::Int(after.unwrap_or(0)));
        params.push(crate::SqlValue::Int(limit + 1));
        let rows: Vec<RegistrantRow> = with_db!(self, read, p => {
            bind_values!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &params).fetch_all(p).await?
        });
        let mut items: Vec<Registrant> = rows.into_iter().map(Into::into).collect();
        let next_after = if items.len() as i64 > limit {
            items.truncate(limit.max(0) as usize);
            items.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// The IDs of several registrants at once (one query per page of a listing).
    pub async fn reg_ids_for(&self, registrant_ids: &[i64]) -> Result<Vec<RegId>> {
        if registrant_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=registrant_ids.len())
            .map(|i| format!("${i}"))
            .collect();
        let sql = format!(
            "SELECT ri.id, ri.registrant_id, ri.id_type_id, t.name AS id_type, ri.value, \
             ri.expiry_date, ri.status, ri.description, ri.updated_at FROM reg_ids ri \
             JOIN id_types t ON t.id = ri.id_type_id WHERE ri.registrant_id IN ({}) \
             ORDER BY ri.registrant_id, t.name",
            placeholders.join(", ")
        );
        let rows: Vec<RegIdRow> = with_db!(self, read, p => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for id in registrant_ids {
                q = q.bind(*id);
            }
            q.fetch_all(p).await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    // ------------------------------------------------------------------ typed IDs

    pub async fn list_reg_ids(&self, registrant_id: i64) -> Result<Vec<RegId>> {
        let rows: Vec<RegIdRow> = with_db!(self, read, p => {
            sqlx::query_as(SELECT_REG_IDS).bind(registrant_id).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Adds an ID, or replaces the registrant's ID of the same type (at most one per type).
    /// Returns the stored ID and whether it was newly created.
    pub async fn upsert_reg_id(
        &self,
        registrant_id: i64,
        id: &NewRegId,
        actor: &Actor,
    ) -> Result<(RegId, bool)> {
        const FIND: &str = "SELECT id FROM reg_ids WHERE registrant_id = $1 AND id_type_id = $2";
        const UPDATE: &str = "UPDATE reg_ids SET value = $2, expiry_date = $3, status = $4, \
            description = $5, updated_at = $6 WHERE id = $1";
        self.get_registrant(registrant_id).await?;
        let types = self.load_id_types().await?;
        let type_id = match types.check(std::slice::from_ref(id)) {
            Ok(v) => v.first().copied().ok_or(StoreError::not_found("ID type"))?,
            // Single-ID operations report on the body's own field names.
            Err(e) => {
                return Err(StoreError::Validation(FieldErrors(
                    e.0.into_iter()
                        .map(|(k, v)| (k.trim_start_matches("ids[0].").to_owned(), v))
                        .collect(),
                )));
            }
        };
        let before: Vec<RegId> = self
            .list_reg_ids(registrant_id)
            .await?
            .into_iter()
            .filter(|r| r.id_type_id == type_id)
            .collect();
        let now = Utc::now();
        let (row_id, created) = with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let existing: Option<i64> = sqlx::query_scalar(FIND).bind(registrant_id).bind(type_id).fetch_optional(&mut *tx).await?;
            let (row_id, created) = match existing {
                Some(row_id) => {
                    sqlx::query(UPDATE).bind(row_id).bind(&id.value).bind(id.expiry_date)
                        .bind(id.status.as_str()).bind(id.description.as_deref()).bind(now)
                        .execute(&mut *tx).await?;
                    (row_id, false)
                }
                None => {
                    let row_id: i64 = sqlx::query_scalar(INSERT_REG_ID).bind(registrant_id).bind(type_id)
                        .bind(&id.value).bind(id.expiry_date).bind(id.status.as_str())
                        .bind(id.description.as_deref()).bind(now).fetch_one(&mut *tx).await?;
                    (row_id, true)
                }
            };
            sqlx::query("UPDATE registrants SET updated_at = $2, version = version + 1 WHERE id = $1")
                .bind(registrant_id).bind(now).execute(&mut *tx).await?;
            let after: RegIdRow = sqlx::query_as(
                "SELECT ri.id, ri.registrant_id, ri.id_type_id, t.name AS id_type, ri.value, \
                 ri.expiry_date, ri.status, ri.description, ri.updated_at FROM reg_ids ri \
                 JOIN id_types t ON t.id = ri.id_type_id WHERE ri.id = $1")
                .bind(row_id).fetch_one(&mut *tx).await?;
            let after: RegId = after.into();
            audit_insert!(&mut *tx, actor, if created { "add_id" } else { "replace_id" }, "reg_id",
                Some(row_id), Some(registrant_id), before.first().and_then(to_json), to_json(&after))?;
            tx.commit().await?;
            (row_id, created)
        });
        let stored = self
            .list_reg_ids(registrant_id)
            .await?
            .into_iter()
            .find(|r| r.id == row_id)
            .ok_or(StoreError::not_found("ID"))?;
        Ok((stored, created))
    }

    /// Removes the registrant's ID of the named type.
    pub async fn remove_reg_id(
        &self,
        registrant_id: i64,
        id_type: &str,
        actor: &Actor,
    ) -> Result<()> {
        const SQL: &str = "DELETE FROM reg_ids WHERE id = $1";
        let existing = self
            .list_reg_ids(registrant_id)
            .await?
            .into_iter()
            .find(|r| r.id_type.eq_ignore_ascii_case(id_type))
            .ok_or(StoreError::not_found("ID"))?;
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query(SQL).bind(existing.id).execute(&mut *tx).await?;
            sqlx::query("UPDATE registrants SET updated_at = $2, version = version + 1 WHERE id = $1")
                .bind(registrant_id).bind(now).execute(&mut *tx).await?;
            audit_insert!(&mut *tx, actor, "remove_id", "reg_id", Some(existing.id), Some(registrant_id), to_json(&existing), None::<Value>)?;
            tx.commit().await?;
        });
        Ok(())
    }

    // ------------------------------------------------------------------ bank accounts

    pub async fn list_bank_accounts(&self, registrant_id: i64) -> Result<Vec<BankAccount>> {
        let rows: Vec<BankAccountRow> = with_db!(self, read, p => {
            sqlx::query_as(SELECT_BANK_ACCOUNTS).bind(registrant_id).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn add_bank_account(
        &self,
        registrant_id: i64,
        b: &NewBankAccount,
        actor: &Actor,
    ) -> Result<BankAccount> {
        self.get_registrant(registrant_id).await?;
        let now = Utc::now();
        let id = with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar(INSERT_BANK_ACCOUNT).bind(registrant_id)
                .bind(&b.account_number).bind(b.iban.as_deref()).bind(b.bank_code.as_deref())
                .bind(b.bic.as_deref()).bind(b.account_holder_name.as_deref()).bind(now)
                .fetch_one(&mut *tx).await?;
            let after = BankAccount {
                id, registrant_id, account_number: b.account_number.clone(), iban: b.iban.clone(),
                bank_code: b.bank_code.clone(), bic: b.bic.clone(),
                account_holder_name: b.account_holder_name.clone(), created_at: now,
            };
            audit_insert!(&mut *tx, actor, "add_bank_account", "bank_account", Some(id), Some(registrant_id), None::<Value>, to_json(&after))?;
            tx.commit().await?;
            id
        });
        self.list_bank_accounts(registrant_id)
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or(StoreError::not_found("bank account"))
    }

    pub async fn remove_bank_account(
        &self,
        registrant_id: i64,
        account_id: i64,
        actor: &Actor,
    ) -> Result<()> {
        const SQL: &str = "DELETE FROM bank_accounts WHERE id = $1 AND registrant_id = $2";
        let before = self
            .list_bank_accounts(registrant_id)
            .await?
            .into_iter()
            .find(|a| a.id == account_id)
            .ok_or(StoreError::not_found("bank account"))?;
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query(SQL).bind(account_id).bind(registrant_id).execute(&mut *tx).await?;
            audit_insert!(&mut *tx, actor, "remove_bank_account", "bank_account", Some(account_id), Some(registrant_id), to_json(&before), None::<Value>)?;
            tx.commit().await?;
        });
        Ok(())
    }

    // ------------------------------------------------------------------ groups

    /// Adds an individual to a group.
    pub async fn add_member(
        &self,
        group_id: i64,
        m: &NewMembership,
        actor: &Actor,
    ) -> Result<Membership> {
        const SQL: &str = "INSERT INTO memberships (group_id, individual_id, kinds, start_date, \
            end_date, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
        let group = self.get_registrant(group_id).await?;
        if !group.is_group {
            return Err(StoreError::not_found("group"));
        }
        let individual = match self.get_registrant(m.individual_id).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(StoreError::field("individual_id", "no such individual"));
            }
            other => other?,
        };
        if individual.is_group {
            return Err(StoreError::field(
                "individual_id",
                "must be an individual, not a group",
            ));
        }
        let id = with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar(SQL).bind(group_id).bind(m.individual_id)
                .bind(Json(&m.kinds)).bind(m.start_date).bind(m.end_date).bind(Utc::now())
                .fetch_one(&mut *tx).await?;
            let after = Membership { id, group_id, individual_id: m.individual_id, kinds: m.kinds.clone(), start_date: m.start_date, end_date: m.end_date };
            audit_insert!(&mut *tx, actor, "add_member", "membership", Some(id), Some(group_id), None::<Value>, to_json(&after))?;
            tx.commit().await?;
            id
        });
        self.members(group_id)
            .await?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(StoreError::not_found("membership"))
    }

    pub async fn members(&self, group_id: i64) -> Result<Vec<Membership>> {
        const SQL: &str = "SELECT id, group_id, individual_id, kinds, start_date, end_date \
            FROM memberships WHERE group_id = $1 ORDER BY id";
        let rows: Vec<MembershipRow> =
            with_db!(self, read, p => sqlx::query_as(SQL).bind(group_id).fetch_all(p).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn remove_member(
        &self,
        group_id: i64,
        individual_id: i64,
        actor: &Actor,
    ) -> Result<()> {
        const SQL: &str = "DELETE FROM memberships WHERE group_id = $1 AND individual_id = $2";
        let before = self
            .members(group_id)
            .await?
            .into_iter()
            .find(|m| m.individual_id == individual_id)
            .ok_or(StoreError::not_found("membership"))?;
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query(SQL).bind(group_id).bind(individual_id).execute(&mut *tx).await?;
            audit_insert!(&mut *tx, actor, "remove_member", "membership", Some(before.id), Some(group_id), to_json(&before), None::<Value>)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Number of registrants, for dashboards (exact; cheap enough up to tens of millions on an
    /// index-only scan, and not used on hot paths).
    pub async fn count_registrants(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM registrants";
        Ok(with_db!(self, read, p => sqlx::query_scalar(SQL).fetch_one(p).await?))
    }
}
