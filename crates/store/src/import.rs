//! Bulk import of registrants from CSV or NDJSON: streamed, validated row by row, written in
//! chunks, idempotent by `external_key`, with a per-row error report. The API (`POST
//! /api/v1/import`), the CLI (`g2p import`) and the benchmark all call
//! [`Store::import_registrants`]; this module must not know about HTTP or files, it reads any
//! `AsyncRead`.
//!
//! Three stages run at once with bounded queues between them, so memory stays flat whatever the
//! file size:
//!
//! 1. an async pump reads the input in 64 KiB pieces;
//! 2. a blocking thread splits records (NDJSON lines, or CSV through `csv_core` with a bounded
//!    record buffer), parses and validates each row (domain rules, ID types and their regexes) —
//!    CPU work kept off the async runtime — and groups rows into chunks;
//! 3. the async writer stores each chunk in ONE transaction: a multi-row `INSERT …
//!    ON CONFLICT (external_key) DO NOTHING RETURNING id, external_key` (arrays through `UNNEST`
//!    on PostgreSQL, multi-row `VALUES` within the parameter limit on SQLite), then the IDs, bank
//!    accounts and audit entries of the rows actually created, with the same kind of statement.
//!
//! A key that already exists is skipped, never updated. Duplicate keys inside one file: the first
//! valid row wins and later ones are reported. Within a chunk that is checked in memory; across
//! chunks the database tells (a conflicting key whose registrant carries this import's audit
//! entry was created by an earlier chunk), so no set of every key in the file is ever held. If a
//! chunk fails unexpectedly its rows are retried one transaction each, so one bad row cannot sink
//! the others; a row that still fails is reported with the database's message.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use g2p_domain::{
    BankAccountInput, DomainError, FieldErrors, NewRegistrant, PhoneNumberInput, RegIdInput,
    RegistrantInput,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::Store;
use crate::audit::Actor;
use crate::db::PoolsRef;
use crate::error::StoreError;
use crate::registry::IdTypeSet;

/// Rows per transaction unless the caller says otherwise.
pub const DEFAULT_CHUNK_SIZE: usize = 2_000;
/// Upper bound on rows per transaction: keeps a chunk's memory and lock time modest, and its
/// key lookup within SQLite's parameter limit.
pub const MAX_CHUNK_SIZE: usize = 10_000;
/// Failed rows listed in the report; the count of failures is always exact.
pub const DEFAULT_MAX_LISTED_ERRORS: usize = 1_000;
/// Longest NDJSON line or CSV record. A longer one is reported as a bad row and skipped, never
/// buffered whole.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// More CSV columns than this is not a registrant file.
const MAX_CSV_COLUMNS: usize = 1_000;
const READ_CHUNK: usize = 64 * 1024;
/// SQLite's default limit on bound parameters in one statement (SQLITE_MAX_VARIABLE_NUMBER).
const SQLITE_MAX_PARAMS: usize = 32_766;
/// An import that creates at least this many registrants refreshes the planner's statistics,
/// so that searches right after a large load get good plans.
const ANALYZE_AFTER_ROWS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    Csv,
    Ndjson,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Csv => "csv",
            ImportFormat::Ndjson => "ndjson",
        }
    }

    /// `csv`, `ndjson` or `jsonl`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(ImportFormat::Csv),
            "ndjson" | "jsonl" => Some(ImportFormat::Ndjson),
            _ => None,
        }
    }

    /// From a media type: `text/csv`, or `application/x-ndjson` (and its aliases).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "text/csv" | "application/csv" => Some(ImportFormat::Csv),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Some(ImportFormat::Ndjson),
            _ => None,
        }
    }

    /// From a file name: `.csv`, `.ndjson` or `.jsonl`.
    pub fn from_path(path: &Path) -> Option<Self> {
        path.extension()?.to_str().and_then(Self::parse)
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Rows per transaction (clamped to 1..=[`MAX_CHUNK_SIZE`]).
    pub chunk_size: usize,
    /// Failed rows listed in the report.
    pub max_listed_errors: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_listed_errors: DEFAULT_MAX_LISTED_ERRORS,
        }
    }
}

/// The outcome of an import. `rows_total = created + skipped_existing + failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Identifies this import in the audit log.
    pub import_id: String,
    /// Data rows read (blank lines are not rows).
    pub rows_total: u64,
    pub created: u64,
    /// Rows whose external_key already existed: left untouched.
    pub skipped_existing: u64,
    pub failed: u64,
    /// The first failed rows by line number (at most 1,000 by default).
    pub errors: Vec<RowError>,
    /// Set when more rows failed than are listed.
    pub errors_truncated: bool,
}

/// One rejected row: its line in the file (a CSV record spanning lines reports its first line),
/// and the problems by field (CSV files name their columns).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub line: u64,
    pub external_key: Option<String>,
    #[schema(value_type = Object)]
    pub fields: FieldErrors,
}

/// Failures that stop an import as a whole. Rows already committed stay (a re-run skips them).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Nothing was imported: the CSV header is unusable (unknown or repeated column, …).
    #[error("{0}")]
    Header(String),
    /// Reading the input failed (a body limit, a dropped connection, a disk error).
    #[error("cannot read the input: {0}")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(e.into())
    }
}

fn one_error(field: &str, message: impl Into<String>) -> FieldErrors {
    let mut f = FieldErrors::new();
    f.add(field, message);
    f
}

// ---------------------------------------------------------------------------------------------
// Validated rows and chunks
// ---------------------------------------------------------------------------------------------

/// A row that passed validation, ready to insert.
struct GoodRow {
    line: u64,
    reg: NewRegistrant,
    /// ID type ids, parallel to `reg.ids`.
    type_ids: Vec<i64>,
    /// JSON text of `phone_numbers` and `attributes`, made on the parsing thread so the writer
    /// only binds.
    phones_json: String,
    attrs_json: String,
}

impl GoodRow {
    fn key(&self) -> &str {
        self.reg.external_key.as_deref().unwrap_or_default()
    }
}

/// Consecutive rows of the input: the valid ones and the errors of the others.
#[derive(Default)]
struct Batch {
    rows: Vec<GoodRow>,
    errors: Vec<RowError>,
    seen: u64,
}

struct Validator {
    types: IdTypeSet,
    today: NaiveDate,
}

impl Validator {
    /// Everything wrong with the row at once, or the row ready to insert.
    fn validate(&self, line: u64, input: &RegistrantInput) -> Result<GoodRow, FieldErrors> {
        let mut errors = FieldErrors::new();
        if input
            .external_key
            .as_deref()
            .is_none_or(|k| k.trim().is_empty())
        {
            errors.add(
                "external_key",
                "is required for an import: it is what makes a re-run idempotent",
            );
        }
        match input.parse(self.today) {
            Ok(reg) => {
                let type_ids = match self.types.check(&reg.ids) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.merge(e);
                        Vec::new()
                    }
                };
                // The (registrant, account number) pair is unique in the database; catching a
                // repeat here keeps it from failing a whole chunk.
                for (j, b) in reg.bank_accounts.iter().enumerate() {
                    if reg.bank_accounts[..j]
                        .iter()
                        .any(|o| o.account_number == b.account_number)
                    {
                        errors.add(
                            format!("bank_accounts[{j}].account_number"),
                            "appears twice for this registrant",
                        );
                    }
                }
                errors.into_result().map_err(|e| match e {
                    DomainError::Validation(f) => f,
                    other => one_error("row", other.to_string()),
                })?;
                let phones_json = serde_json::to_string(&reg.phone_numbers)
                    .map_err(|e| one_error("phone_numbers", e.to_string()))?;
                let attrs_json = serde_json::to_string(&reg.attributes)
                    .map_err(|e| one_error("attributes", e.to_string()))?;
                Ok(GoodRow {
                    line,
                    reg,
                    type_ids,
                    phones_json,
                    attrs_json,
                })
            }
            Err(DomainError::Validation(f)) => {
                errors.merge(f);
                // Also report unknown ID types and regex mismatches, so that one pass shows
                // everything wrong with the row.
                for (i, id) in input.ids.iter().enumerate() {
                    if let Ok(parsed) = id.parse()
                        && let Err(e) = self.types.check(std::slice::from_ref(&parsed))
                    {
                        for (k, msgs) in e.0 {
                            let k = k.replacen("ids[0]", &format!("ids[{i}]"), 1);
                            for m in msgs {
                                errors.add(k.clone(), m);
                            }
                        }
                    }
                }
                Err(errors)
            }
            Err(other) => {
                errors.add("row", other.to_string());
                Err(errors)
            }
        }
    }
}

fn clean_key(key: Option<&str>) -> Option<String> {
    key.map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// Why the parsing thread stopped early.
enum ParseStop {
    Header(String),
    Read(io::Error),
    /// The writer is gone (it failed, or the import was cancelled).
    WriterGone,
}

/// Groups rows into batches and hands them to the writer; drops in-batch duplicate keys.
struct BatchSink {
    tx: mpsc::Sender<Batch>,
    chunk_size: usize,
    batch: Batch,
    /// First line of each key in the current batch (cleared with the batch).
    first_line: HashMap<String, u64>,
}

impl BatchSink {
    fn new(tx: mpsc::Sender<Batch>, chunk_size: usize) -> Self {
        Self {
            tx,
            chunk_size,
            batch: Batch::default(),
            first_line: HashMap::new(),
        }
    }

    fn good(&mut self, row: GoodRow) -> Result<(), ParseStop> {
        self.batch.seen += 1;
        match self.first_line.get(row.key()) {
            Some(first) => self.batch.errors.push(duplicate_error(&row, *first)),
            None => {
                self.first_line.insert(row.key().to_owned(), row.line);
                self.batch.rows.push(row);
            }
        }
        self.maybe_flush()
    }

    fn bad(&mut self, e: RowError) -> Result<(), ParseStop> {
        self.batch.seen += 1;
        self.batch.errors.push(e);
        self.maybe_flush()
    }

    fn maybe_flush(&mut self) -> Result<(), ParseStop> {
        // Errors count towards the size too, so a file of bad rows is still sent in pieces.
        if self.batch.rows.len() + self.batch.errors.len() >= self.chunk_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ParseStop> {
        let batch = std::mem::take(&mut self.batch);
        self.first_line.clear();
        if batch.seen > 0 {
            self.tx
                .blocking_send(batch)
                .map_err(|_| ParseStop::WriterGone)?;
        }
        Ok(())
    }
}

fn duplicate_error(row: &GoodRow, first_line: u64) -> RowError {
    RowError {
        line: row.line,
        external_key: Some(row.key().to_owned()),
        fields: one_error(
            "external_key",
            format!("duplicate of line {first_line} in this file: the first row with a key wins"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading: async pump → blocking reader
// ---------------------------------------------------------------------------------------------

/// Feeds the input to the parsing thread in pieces; stops when the thread stops listening.
async fn pump<R: AsyncRead + Unpin>(mut input: R, tx: mpsc::Sender<io::Result<Vec<u8>>>) {
    loop {
        let mut buf = Vec::with_capacity(READ_CHUNK);
        match input.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(Ok(buf)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// The blocking side of [`pump`]: a `BufRead` over the pieces received.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                None => return Ok(&[]),
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }
}

/// Reads one line (without its `\n`) into `buf`. `None` at the end of the input; `Some(true)`
/// when the line was longer than `max` (its content is then dropped, not buffered).
fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let (used, done) = {
            let available = r.fill_buf()?;
            if available.is_empty() {
                return Ok(any.then_some(too_long));
            }
            any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let part = &available[..newline.unwrap_or(available.len())];
            if !too_long {
                if buf.len() + part.len() > max {
                    too_long = true;
                    buf.clear();
                } else {
                    buf.extend_from_slice(part);
                }
            }
            match newline {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            }
        };
        r.consume(used);
        if done {
            return Ok(Some(too_long));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NDJSON
// ---------------------------------------------------------------------------------------------

fn parse_ndjson<R: BufRead>(
    mut r: R,
    v: &Validator,
    sink: &mut BatchSink,
) -> Result<(), ParseStop> {
    let mut buf = Vec::with_capacity(4096);
    let mut line = 0u64;
    while let Some(too_long) =
        read_line_bounded(&mut r, &mut buf, MAX_RECORD_BYTES).map_err(ParseStop::Read)?
    {
        line += 1;
        if too_long {
            sink.bad(RowError {
                line,
                external_key: None,
                fields: one_error("line", format!("is longer than {MAX_RECORD_BYTES} bytes")),
            })?;
            continue;
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match parse_json_row(text) {
            Ok(input) => match v.validate(line, &input) {
                Ok(row) => sink.good(row)?,
                Err(fields) => sink.bad(RowError {
                    line,
                    external_key: clean_key(input.external_key.as_deref()),
                    fields,
                })?,
            },
            Err(fields) => sink.bad(RowError {
                line,
                external_key: key_of_raw_json(text),
                fields,
            })?,
        }
    }
    Ok(())
}

/// One NDJSON line as a [`RegistrantInput`]; errors name the JSON path that failed.
fn parse_json_row(text: &[u8]) -> Result<RegistrantInput, FieldErrors> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let result: Result<RegistrantInput, _> = serde_path_to_error::deserialize(&mut de);
    let input = match result {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if inner.is_syntax() || inner.is_eof() {
                one_error("json", format!("malformed JSON: {inner}"))
            } else {
                let field = if path == "." { "json".to_owned() } else { path };
                one_error(&field, inner.to_string())
            });
        }
    };
    de.end()
        .map_err(|e| one_error("json", format!("malformed JSON: {e}")))?;
    Ok(input)
}

/// The external key of a line that did not parse as a registrant, when it is at least JSON.
fn key_of_raw_json(text: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(text).ok()?;
    clean_key(v.get("external_key")?.as_str())
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/// CSV records from a `BufRead`, with the line each record starts on, and a record buffer that
/// never grows past [`MAX_RECORD_BYTES`].
struct CsvRecords<R> {
    rdr: R,
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    n_fields: usize,
    /// `\n` bytes consumed so far.
    newlines: u64,
}

struct RecordInfo {
    line: u64,
    too_large: bool,
}

impl<R: BufRead> CsvRecords<R> {
    fn new(rdr: R) -> Self {
        Self {
            rdr,
            core: csv_core::Reader::new(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            n_fields: 0,
            newlines: 0,
        }
    }

    fn next_record(&mut self) -> io::Result<Option<RecordInfo>> {
        // Skip the terminators between records here (csv_core would discard them too), so the
        // start line of the record is exact even after blank lines or CRLF endings.
        loop {
            let (skip, newlines, all) = {
                let input = self.rdr.fill_buf()?;
                let skip = input
                    .iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
                let newlines = input[..skip].iter().filter(|&&b| b == b'\n').count();
                (skip, newlines, skip == input.len() && skip > 0)
            };
            self.rdr.consume(skip);
            self.newlines += newlines as u64;
            if !all {
                break;
            }
        }
        let line = self.newlines + 1;
        let (mut outlen, mut endlen) = (0, 0);
        let mut too_large = false;
        loop {
            let (res, nin, nout, nend, newlines) = {
                let input = self.rdr.fill_buf()?;
                let (res, nin, nout, nend) =
                    self.core
                        .read_record(input, &mut self.out[outlen..], &mut self.ends[endlen..]);
                let newlines = input[..nin].iter().filter(|&&b| b == b'\n').count();
                (res, nin, nout, nend, newlines)
            };
            self.rdr.consume(nin);
            self.newlines += newlines as u64;
            outlen += nout;
            endlen += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        // Keep reading to the end of the record, dropping its content.
                        too_large = true;
                        outlen = 0;
                    } else {
                        let len = (self.out.len() * 2).min(MAX_RECORD_BYTES);
                        self.out.resize(len, 0);
                    }
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > MAX_CSV_COLUMNS {
                        too_large = true;
                        endlen = 0;
                    } else {
                        let len = self.ends.len() * 2;
                        self.ends.resize(len, 0);
                    }
                }
                csv_core::ReadRecordResult::Record => {
                    self.n_fields = if too_large { 0 } else { endlen };
                    return Ok(Some(RecordInfo { line, too_large }));
                }
                csv_core::ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

impl<R> CsvRecords<R> {
    fn len(&self) -> usize {
        self.n_fields
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let end = self.ends[i];
        self.out.get(start..end).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextCol {
    ExternalKey,
    Name,
    GivenName,
    FamilyName,
    AddlName,
    Gender,
    Birthdate,
    BirthPlace,
    Address,
    Email,
    RegistrationDate,
    DisabledReason,
    GroupKind,
}

impl TextCol {
    fn slot(self, r: &mut RegistrantInput) -> &mut Option<String> {
        match self {
            TextCol::ExternalKey => &mut r.external_key,
            TextCol::Name => &mut r.name,
            TextCol::GivenName => &mut r.given_name,
            TextCol::FamilyName => &mut r.family_name,
            TextCol::AddlName => &mut r.addl_name,
            TextCol::Gender => &mut r.gender,
            TextCol::Birthdate => &mut r.birthdate,
            TextCol::BirthPlace => &mut r.birth_place,
            TextCol::Address => &mut r.address,
            TextCol::Email => &mut r.email,
            TextCol::RegistrationDate => &mut r.registration_date,
            TextCol::DisabledReason => &mut r.disabled_reason,
            TextCol::GroupKind => &mut r.group_kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BoolCol {
    IsGroup,
    BirthdateNotExact,
    Disabled,
}

impl BoolCol {
    fn slot(self, r: &mut RegistrantInput) -> &mut bool {
        match self {
            BoolCol::IsGroup => &mut r.is_group,
            BoolCol::BirthdateNotExact => &mut r.birthdate_not_exact,
            BoolCol::Disabled => &mut r.disabled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BankCol {
    AccountNumber,
    Iban,
    Bic,
    Code,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Col {
    Text(TextCol),
    Bool(BoolCol),
    Phone,
    /// `id:<ID TYPE NAME>`
    Id(String),
    /// `attr:<key>`
    Attr(String),
    Bank(BankCol),
}

const TEXT_COLUMNS: &[(&str, TextCol)] = &[
    ("external_key", TextCol::ExternalKey),
    ("name", TextCol::Name),
    ("given_name", TextCol::GivenName),
    ("family_name", TextCol::FamilyName),
    ("addl_name", TextCol::AddlName),
    ("gender", TextCol::Gender),
    ("birthdate", TextCol::Birthdate),
    ("birth_place", TextCol::BirthPlace),
    ("address", TextCol::Address),
    ("email", TextCol::Email),
    ("registration_date", TextCol::RegistrationDate),
    ("disabled_reason", TextCol::DisabledReason),
    ("group_kind", TextCol::GroupKind),
];

const BOOL_COLUMNS: &[(&str, BoolCol)] = &[
    ("is_group", BoolCol::IsGroup),
    ("birthdate_not_exact", BoolCol::BirthdateNotExact),
    ("disabled", BoolCol::Disabled),
];

const BANK_COLUMNS: &[(&str, BankCol)] = &[
    ("bank_account_number", BankCol::AccountNumber),
    ("bank_iban", BankCol::Iban),
    ("bank_bic", BankCol::Bic),
    ("bank_code", BankCol::Code),
];

const KNOWN_COLUMNS_HELP: &str = "expected registrant fields (external_key, is_group, name, \
    given_name, family_name, addl_name, gender, birthdate, birthdate_not_exact, birth_place, \
    address, email, registration_date, disabled, disabled_reason, group_kind), phone, \
    id:<ID TYPE NAME>, attr:<key>, bank_account_number, bank_iban, bank_bic or bank_code";

/// What each CSV column means, from the header row.
struct CsvPlan {
    names: Vec<String>,
    cols: Vec<Col>,
    key_col: usize,
}

impl CsvPlan {
    fn from_header(names: Vec<String>) -> Result<Self, String> {
        if names.len() > MAX_CSV_COLUMNS {
            return Err(format!(
                "the header has more than {MAX_CSV_COLUMNS} columns"
            ));
        }
        let mut cols = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let n = i + 1;
            let lower = name.to_ascii_lowercase();
            let col = if name.is_empty() {
                return Err(format!("column {n} of the header has no name"));
            } else if let Some((_, c)) = TEXT_COLUMNS.iter().find(|(k, _)| *k == lower) {
                Col::Text(*c)
            } else if let Some((_, c)) = BOOL_COLUMNS.iter().find(|(k, _)| *k == lower) {
                Col::Bool(*c)
            } else if let Some((_, c)) = BANK_COLUMNS.iter().find(|(k, _)| *k == lower) {
                Col::Bank(*c)
            } else if lower == "phone" {
                Col::Phone
            } else if let Some(t) = lower.starts_with("id:").then(|| name[3..].trim()) {
                if t.is_empty() {
                    return Err(format!(
                        "column {n} ({name:?}) names no ID type: use id:<ID TYPE NAME>"
                    ));
                }
                Col::Id(t.to_owned())
            } else if let Some(k) = lower.starts_with("attr:").then(|| name[5..].trim()) {
                if k.is_empty() {
                    return Err(format!(
                        "column {n} ({name:?}) names no attribute: use attr:<key>"
                    ));
                }
                Col::Attr(k.to_owned())
            } else {
                return Err(format!(
                    "unknown column {name:?} (column {n}): {KNOWN_COLUMNS_HELP}"
                ));
            };
            let same = |c: &Col| match (c, &col) {
                (Col::Id(a), Col::Id(b)) => a.eq_ignore_ascii_case(b),
                (a, b) => a == b,
            };
            if let Some(first) = cols.iter().position(same) {
                return Err(format!(
                    "column {name:?} (column {n}) repeats column {} ({:?})",
                    first + 1,
                    names[first]
                ));
            }
            cols.push(col);
        }
        let Some(key_col) = cols
            .iter()
            .position(|c| *c == Col::Text(TextCol::ExternalKey))
        else {
            return Err(
                "the header has no external_key column: every imported row needs one, \
                        it is what makes a re-run idempotent"
                    .to_owned(),
            );
        };
        Ok(CsvPlan {
            names,
            cols,
            key_col,
        })
    }

    /// The registrant of one record, the columns its IDs came from (for error names) and the
    /// problems found in cells (booleans, encoding).
    fn to_input<R>(&self, rec: &CsvRecords<R>) -> (RegistrantInput, Vec<usize>, FieldErrors) {
        let mut input = RegistrantInput::default();
        let mut bank = BankAccountInput::default();
        let mut has_bank = false;
        let mut id_cols = Vec::new();
        let mut errors = FieldErrors::new();
        for (i, col) in self.cols.iter().enumerate() {
            let Ok(cell) = std::str::from_utf8(rec.field(i)) else {
                errors.add(self.names[i].clone(), "is not valid UTF-8");
                continue;
            };
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            match col {
                Col::Text(t) => *t.slot(&mut input) = Some(cell.to_owned()),
                Col::Bool(b) => match parse_bool(cell) {
                    Some(v) => *b.slot(&mut input) = v,
                    None => errors.add(self.names[i].clone(), "must be true/false, yes/no or 1/0"),
                },
                Col::Phone => input.phone_numbers.push(PhoneNumberInput {
                    phone_no: cell.to_owned(),
                    date_collected: None,
                }),
                Col::Id(t) => {
                    id_cols.push(i);
                    input.ids.push(RegIdInput {
                        id_type: t.clone(),
                        value: cell.to_owned(),
                        ..RegIdInput::default()
                    });
                }
                Col::Attr(k) => {
                    input.attributes.insert(k.clone(), attr_value(cell));
                }
                Col::Bank(b) => {
                    has_bank = true;
                    let v = cell.to_owned();
                    match b {
                        BankCol::AccountNumber => bank.account_number = v,
                        BankCol::Iban => bank.iban = Some(v),
                        BankCol::Bic => bank.bic = Some(v),
                        BankCol::Code => bank.bank_code = Some(v),
                    }
                }
            }
        }
        if has_bank {
            input.bank_accounts.push(bank);
        }
        (input, id_cols, errors)
    }

    /// Renames the domain's field names (`ids[1].value`, `bank_accounts[0].iban`) to the CSV
    /// columns they came from (`id:MOSIP VID`, `bank_iban`).
    fn relabel(&self, errors: FieldErrors, id_cols: &[usize]) -> FieldErrors {
        let mut out = FieldErrors::new();
        for (field, messages) in errors.0 {
            let name = if let Some(rest) = field.strip_prefix("ids[") {
                rest.split(']')
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| id_cols.get(i))
                    .map(|&c| self.names[c].clone())
                    .unwrap_or(field)
            } else if field.starts_with("phone_numbers[") {
                "phone".to_owned()
            } else if let Some(rest) = field.strip_prefix("bank_accounts[") {
                match rest.split_once("].").map(|(_, f)| f) {
                    Some("bank_code") => "bank_code".to_owned(),
                    Some(f) => format!("bank_{f}"),
                    None => "bank_account_number".to_owned(),
                }
            } else {
                field
            };
            for m in messages {
                out.add(name.clone(), m);
            }
        }
        out
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// An `attr:` cell: JSON booleans and numbers are recognised, anything else stays text. Digit
/// strings a JSON number cannot hold exactly (long IDs), and ones with leading zeros, stay text.
fn attr_value(cell: &str) -> Value {
    match cell {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = cell.parse::<i64>()
        && i.to_string() == cell
    {
        return Value::from(i);
    }
    if cell.contains(['.', 'e', 'E'])
        && let Ok(n) = serde_json::from_str::<serde_json::Number>(cell)
        && n.as_f64().is_some_and(f64::is_finite)
    {
        return Value::Number(n);
    }
    Value::String(cell.to_owned())
}

fn parse_csv<R: BufRead>(r: R, v: &Validator, sink: &mut BatchSink) -> Result<(), ParseStop> {
    let mut rec = CsvRecords::new(r);
    let header = rec.next_record().map_err(ParseStop::Read)?.ok_or_else(|| {
        ParseStop::Header("the file is empty: a header row naming the columns is required".into())
    })?;
    if header.too_large {
        return Err(ParseStop::Header("the header row is too large".into()));
    }
    let mut names = Vec::with_capacity(rec.len());
    for i in 0..rec.len() {
        let name = std::str::from_utf8(rec.field(i))
            .map_err(|_| ParseStop::Header("the header row is not valid UTF-8".into()))?;
        names.push(name.trim().to_owned());
    }
    let plan = CsvPlan::from_header(names).map_err(ParseStop::Header)?;
    while let Some(info) = rec.next_record().map_err(ParseStop::Read)? {
        let line = info.line;
        if info.too_large {
            sink.bad(RowError {
                line,
                external_key: None,
                fields: one_error("row", format!("is larger than {MAX_RECORD_BYTES} bytes")),
            })?;
            continue;
        }
        // A line of spaces is a blank line, not a row.
        if rec.len() == 1 && rec.field(0).trim_ascii().is_empty() {
            continue;
        }
        if rec.len() != plan.cols.len() {
            let raw_key = (plan.key_col < rec.len())
                .then(|| std::str::from_utf8(rec.field(plan.key_col)).ok())
                .flatten();
            sink.bad(RowError {
                line,
                external_key: clean_key(raw_key),
                fields: one_error(
                    "row",
                    format!(
                        "has {} fields; the header has {}",
                        rec.len(),
                        plan.cols.len()
                    ),
                ),
            })?;
            continue;
        }
        let (input, id_cols, mut errors) = plan.to_input(&rec);
        let external_key = clean_key(input.external_key.as_deref());
        match v.validate(line, &input) {
            Ok(row) if errors.is_empty() => sink.good(row)?,
            Ok(_) => sink.bad(RowError {
                line,
                external_key,
                fields: errors,
            })?,
            Err(f) => {
                errors.merge(plan.relabel(f, &id_cols));
                sink.bad(RowError {
                    line,
                    external_key,
                    fields: errors,
                })?
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

struct WriteCtx<'a> {
    actor: &'a Actor,
    import_id: &'a str,
    /// Rows created before this instant cannot be from this import (see [`classify`]).
    started: DateTime<Utc>,
}

/// What one chunk transaction did.
#[derive(Default)]
struct ChunkOutcome {
    created: u64,
    skipped: u64,
    /// (index in the chunk, line of the first occurrence) of keys created by an earlier chunk
    /// of this same import.
    duplicates: Vec<(usize, u64)>,
}

/// Running totals, and the listed errors.
struct Tally {
    report: ImportReport,
    max_listed: usize,
}

impl Tally {
    fn apply(&mut self, o: ChunkOutcome, rows: &[GoodRow], errors: &mut Vec<RowError>) {
        self.report.created += o.created;
        self.report.skipped_existing += o.skipped;
        for (i, first) in o.duplicates {
            if let Some(row) = rows.get(i) {
                errors.push(duplicate_error(row, first));
            }
        }
    }

    /// Errors of one batch. Batches cover consecutive lines, so sorting each batch keeps the
    /// listed errors the first ones by line.
    fn add_errors(&mut self, mut errors: Vec<RowError>) {
        errors.sort_by_key(|e| e.line);
        self.report.failed += errors.len() as u64;
        for e in errors {
            if self.report.errors.len() < self.max_listed {
                self.report.errors.push(e);
            } else {
                self.report.errors_truncated = true;
            }
        }
    }
}

/// A failure that belongs to the row (a constraint, a value the database refuses), as opposed
/// to one that would fail any row (connection lost, pool exhausted).
fn is_row_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Validation(_)
            | StoreError::Conflict { .. }
            | StoreError::Database(sqlx::Error::Database(_))
    )
}

fn row_fields(e: &StoreError) -> FieldErrors {
    match e {
        StoreError::Validation(f) => f.clone(),
        StoreError::Conflict { field, message } if !field.is_empty() => one_error(field, message),
        other => one_error("row", other.to_string()),
    }
}

/// Of the rows of a chunk whose key conflicted, those created by an earlier chunk of this same
/// import (`created_here`: key and line, from their audit entries) are duplicates; the others
/// existed before and are skipped.
fn classify(
    conflicts: &[usize],
    rows: &[GoodRow],
    created_here: &[(String, Option<i64>)],
) -> (u64, Vec<(usize, u64)>) {
    let first: HashMap<&str, u64> = created_here
        .iter()
        .map(|(k, line)| (k.as_str(), line.unwrap_or(0).max(0) as u64))
        .collect();
    let mut duplicates = Vec::new();
    for &i in conflicts {
        if let Some(line) = rows.get(i).and_then(|r| first.get(r.key())) {
            duplicates.push((i, *line));
        }
    }
    let skipped = (conflicts.len() - duplicates.len()) as u64;
    (skipped, duplicates)
}

impl Store {
    /// Imports registrants from `input` (see the module documentation). Returns the report, or
    /// an error that stopped the import as a whole; chunks committed before such an error stay.
    pub async fn import_registrants<R>(
        &self,
        input: R,
        format: ImportFormat,
        opts: &ImportOptions,
        actor: &Actor,
    ) -> Result<ImportReport, ImportError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let import_id = uuid::Uuid::new_v4().simple().to_string();
        let started = Utc::now();
        let validator = Validator {
            types: self.load_id_types().await?,
            today: started.date_naive(),
        };
        let chunk_size = opts.chunk_size.clamp(1, MAX_CHUNK_SIZE);
        // Small queues: memory is bounded by a few read pieces and two chunks in flight.
        let (bytes_tx, bytes_rx) = mpsc::channel(4);
        let (batch_tx, batch_rx) = mpsc::channel(2);
        let parser = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader::new(bytes_rx);
            let mut sink = BatchSink::new(batch_tx, chunk_size);
            match format {
                ImportFormat::Csv => parse_csv(reader, &validator, &mut sink)?,
                ImportFormat::Ndjson => parse_ndjson(reader, &validator, &mut sink)?,
            }
            sink.flush()
        });
        let ctx = WriteCtx {
            actor,
            import_id: &import_id,
            started,
        };
        let mut tally = Tally {
            report: ImportReport {
                import_id: import_id.clone(),
                ..ImportReport::default()
            },
            max_listed: opts.max_listed_errors,
        };
        let ((), written) = tokio::join!(
            pump(input, bytes_tx),
            self.write_batches(batch_rx, &ctx, &mut tally)
        );
        let parsed = match parser.await {
            Ok(r) => r,
            Err(e) => Err(ParseStop::Read(io::Error::other(e))),
        };
        let outcome: Result<(), ImportError> = match (written, parsed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(ParseStop::Header(m))) => Err(ImportError::Header(m)),
            (Ok(()), Err(ParseStop::Read(e))) => Err(ImportError::Read(e)),
            (Ok(()), Err(ParseStop::WriterGone) | Ok(())) => Ok(()),
        };
        let report = tally.report;
        if let Err(ImportError::Header(m)) = outcome {
            // Nothing was read past the header: nothing to audit.
            return Err(ImportError::Header(m));
        }
        let mut summary = json!({
            "import": import_id,
            "format": format.as_str(),
            "rows_total": report.rows_total,
            "created": report.created,
            "skipped_existing": report.skipped_existing,
            "failed": report.failed,
            "status": if outcome.is_ok() { "completed" } else { "aborted" },
        });
        if let Err(e) = outcome {
            summary["error"] = Value::String(e.to_string());
            if let Err(ae) = self
                .audit_event(actor, "import", "import", None, Some(summary))
                .await
            {
                tracing::error!(import_id = %import_id, error = %ae, "cannot audit an aborted import");
            }
            tracing::warn!(import_id = %import_id, error = %e, created = report.created,
                "import aborted");
            return Err(e);
        }
        self.audit_event(actor, "import", "import", None, Some(summary))
            .await?;
        if report.created >= ANALYZE_AFTER_ROWS {
            self.refresh_statistics().await;
        }
        tracing::info!(
            import_id = %import_id, rows = report.rows_total, created = report.created,
            skipped = report.skipped_existing, failed = report.failed, "import finished"
        );
        Ok(report)
    }

    async fn write_batches(
        &self,
        mut rx: mpsc::Receiver<Batch>,
        ctx: &WriteCtx<'_>,
        tally: &mut Tally,
    ) -> Result<(), ImportError> {
        while let Some(batch) = rx.recv().await {
            let mut errors = batch.errors;
            tally.report.rows_total += batch.seen;
            if !batch.rows.is_empty() {
                match self.write_chunk(&batch.rows, ctx).await {
                    Ok(o) => tally.apply(o, &batch.rows, &mut errors),
                    Err(e) => {
                        tracing::warn!(import_id = %ctx.import_id, error = %e,
                            rows = batch.rows.len(), "import chunk failed; retrying its rows one by one");
                        for row in &batch.rows {
                            let one = std::slice::from_ref(row);
                            match self.write_chunk(one, ctx).await {
                                Ok(o) => tally.apply(o, one, &mut errors),
                                Err(e) if is_row_error(&e) => errors.push(RowError {
                                    line: row.line,
                                    external_key: Some(row.key().to_owned()),
                                    fields: row_fields(&e),
                                }),
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                }
            }
            tally.add_errors(errors);
        }
        Ok(())
    }

    async fn write_chunk(
        &self,
        rows: &[GoodRow],
        ctx: &WriteCtx<'_>,
    ) -> Result<ChunkOutcome, StoreError> {
        match self.pools_ref() {
            PoolsRef::Postgres(p) => pg::write_chunk(p, rows, ctx).await,
            PoolsRef::Sqlite { write, .. } => sqlite::write_chunk(write, rows, ctx).await,
        }
    }

    /// Best effort: stale statistics make plans worse, never results wrong.
    async fn refresh_statistics(&self) {
        let result = match self.pools_ref() {
            PoolsRef::Postgres(p) => sqlx::query("ANALYZE registrants, reg_ids")
                .execute(p)
                .await
                .map(|_| ()),
            // `PRAGMA optimize` analyses the tables that changed a lot, with a bounded sample.
            PoolsRef::Sqlite { write, .. } => sqlx::query("PRAGMA optimize")
                .execute(write)
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot refresh planner statistics after an import");
        }
    }
}

mod pg {
    //! PostgreSQL: one statement per table and chunk, the rows passed as arrays and expanded
    //! with `UNNEST`, so the statement text (and its prepared plan) does not depend on the
    //! chunk size.

    use super::*;
    use sqlx::PgPool;

    const INSERT_REGISTRANTS: &str = "INSERT INTO registrants (external_key, is_group, name, \
        given_name, family_name, addl_name, gender, birthdate, birthdate_not_exact, birth_place, \
        address, phone, phone_numbers, email, registration_date, disabled, disabled_reason, \
        group_kind, attributes, created_at, updated_at, version) \
        SELECT t.external_key, t.is_group, t.name, t.given_name, t.family_name, t.addl_name, \
        t.gender, t.birthdate, t.birthdate_not_exact, t.birth_place, t.address, t.phone, \
        t.phone_numbers::jsonb, t.email, t.registration_date, t.disabled, t.disabled_reason, \
        t.group_kind, t.attributes::jsonb, $20, $20, 1 \
        FROM UNNEST($1::text[], $2::bool[], $3::text[], $4::text[], $5::text[], $6::text[], \
        $7::text[], $8::date[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[], \
        $14::text[], $15::date[], $16::bool[], $17::text[], $18::text[], $19::text[]) \
        AS t(external_key, is_group, name, given_name, family_name, addl_name, gender, \
        birthdate, birthdate_not_exact, birth_place, address, phone, phone_numbers, email, \
        registration_date, disabled, disabled_reason, group_kind, attributes) \
        ON CONFLICT (external_key) DO NOTHING RETURNING id, external_key";

    const INSERT_REG_IDS: &str = "INSERT INTO reg_ids (registrant_id, id_type_id, value, \
        expiry_date, status, description, created_at, updated_at) \
        SELECT t.registrant_id, t.id_type_id, t.value, t.expiry_date, t.status, t.description, \
        $7, $7 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::date[], $5::text[], \
        $6::text[]) AS t(registrant_id, id_type_id, value, expiry_date, status, description)";

    const INSERT_BANK_ACCOUNTS: &str = "INSERT INTO bank_accounts (registrant_id, \
        account_number, iban, bank_code, bic, account_holder_name, created_at) \
        SELECT t.registrant_id, t.account_number, t.iban, t.bank_code, t.bic, \
        t.account_holder_name, $7 FROM UNNEST($1::bigint[], $2::text[], $3::text[], \
        $4::text[], $5::text[], $6::text[]) \
        AS t(registrant_id, account_number, iban, bank_code, bic, account_holder_name)";

    /// One audit entry per created registrant; `after` is kept tiny on purpose (the row itself
    /// is the image, and the import's own entry holds the counts).
    const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, action, entity, entity_id, \
        registrant_id, request_id, before, after) \
        SELECT $1, $2, 'import', 'registrant', t.id, t.id, $3, NULL, \
        jsonb_build_object('import', $4::text, 'line', t.line) \
        FROM UNNEST($5::bigint[], $6::bigint[]) AS t(id, line)";

    const CREATED_BY_IMPORT: &str = "SELECT r.external_key, (a.after->>'line')::bigint \
        FROM registrants r JOIN audit_log a ON a.registrant_id = r.id \
        WHERE r.external_key = ANY($1::text[]) AND r.created_at >= $2 \
        AND a.action = 'import' AND a.entity = 'registrant' AND a.after->>'import' = $3";

    pub(super) async fn write_chunk(
        pool: &PgPool,
        rows: &[GoodRow],
        ctx: &WriteCtx<'_>,
    ) -> Result<ChunkOutcome, StoreError> {
        let now = Utc::now();
        let n = rows.len();
        let mut key = Vec::with_capacity(n);
        let mut is_group = Vec::with_capacity(n);
        let mut name = Vec::with_capacity(n);
        let mut given_name = Vec::with_capacity(n);
        let mut family_name = Vec::with_capacity(n);
        let mut addl_name = Vec::with_capacity(n);
        let mut gender = Vec::with_capacity(n);
        let mut birthdate = Vec::with_capacity(n);
        let mut birthdate_not_exact = Vec::with_capacity(n);
        let mut birth_place = Vec::with_capacity(n);
        let mut address = Vec::with_capacity(n);
        let mut phone = Vec::with_capacity(n);
        let mut phone_numbers = Vec::with_capacity(n);
        let mut email = Vec::with_capacity(n);
        let mut registration_date = Vec::with_capacity(n);
        let mut disabled = Vec::with_capacity(n);
        let mut disabled_reason = Vec::with_capacity(n);
        let mut group_kind = Vec::with_capacity(n);
        let mut attributes = Vec::with_capacity(n);
        for row in rows {
            let r = &row.reg;
            key.push(row.key());
            is_group.push(r.is_group);
            name.push(r.name.as_str());
            given_name.push(r.given_name.as_deref());
            family_name.push(r.family_name.as_deref());
            addl_name.push(r.addl_name.as_deref());
            gender.push(r.gender.as_deref());
            birthdate.push(r.birthdate);
            birthdate_not_exact.push(r.birthdate_not_exact);
            birth_place.push(r.birth_place.as_deref());
            address.push(r.address.as_deref());
            phone.push(r.phone.as_deref());
            phone_numbers.push(row.phones_json.as_str());
            email.push(r.email.as_deref());
            registration_date.push(r.registration_date);
            disabled.push(r.disabled);
            disabled_reason.push(r.disabled_reason.as_deref());
            group_kind.push(r.group_kind.as_deref());
            attributes.push(row.attrs_json.as_str());
        }

        let mut tx = pool.begin().await?;
        let inserted: Vec<(i64, String)> = sqlx::query_as(INSERT_REGISTRANTS)
            .bind(key)
            .bind(is_group)
            .bind(name)
            .bind(given_name)
            .bind(family_name)
            .bind(addl_name)
            .bind(gender)
            .bind(birthdate)
            .bind(birthdate_not_exact)
            .bind(birth_place)
            .bind(address)
            .bind(phone)
            .bind(phone_numbers)
            .bind(email)
            .bind(registration_date)
            .bind(disabled)
            .bind(disabled_reason)
            .bind(group_kind)
            .bind(attributes)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let id_of: HashMap<&str, i64> = inserted.iter().map(|(id, k)| (k.as_str(), *id)).collect();
        let mut created = Vec::with_capacity(inserted.len());
        let mut conflicts = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match id_of.get(row.key()) {
                Some(id) => created.push((row, *id)),
                None => conflicts.push(i),
            }
        }

        let mut id_reg = Vec::new();
        let mut id_type = Vec::new();
        let mut id_value = Vec::new();
        let mut id_expiry = Vec::new();
        let mut id_status = Vec::new();
        let mut id_description = Vec::new();
        let mut ba_reg = Vec::new();
        let mut ba_number = Vec::new();
        let mut ba_iban = Vec::new();
        let mut ba_code = Vec::new();
        let mut ba_bic = Vec::new();
        let mut ba_holder = Vec::new();
        let mut audit_id = Vec::with_capacity(created.len());
        let mut audit_line = Vec::with_capacity(created.len());
        for (row, id) in &created {
            for (reg_id, type_id) in row.reg.ids.iter().zip(&row.type_ids) {
                id_reg.push(*id);
                id_type.push(*type_id);
                id_value.push(reg_id.value.as_str());
                id_expiry.push(reg_id.expiry_date);
                id_status.push(reg_id.status.as_str());
                id_description.push(reg_id.description.as_deref());
            }
            for b in &row.reg.bank_accounts {
                ba_reg.push(*id);
                ba_number.push(b.account_number.as_str());
                ba_iban.push(b.iban.as_deref());
                ba_code.push(b.bank_code.as_deref());
                ba_bic.push(b.bic.as_deref());
                ba_holder.push(b.account_holder_name.as_deref());
            }
            audit_id.push(*id);
            audit_line.push(row.line as i64);
        }
        if !id_reg.is_empty() {
            sqlx::query(INSERT_REG_IDS)
                .bind(id_reg)
                .bind(id_type)
                .bind(id_value)
                .bind(id_expiry)
                .bind(id_status)
                .bind(id_description)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        if !ba_reg.is_empty() {
            sqlx::query(INSERT_BANK_ACCOUNTS)
                .bind(ba_reg)
                .bind(ba_number)
                .bind(ba_iban)
                .bind(ba_code)
                .bind(ba_bic)
                .bind(ba_holder)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        if !audit_id.is_empty() {
            sqlx::query(INSERT_AUDIT)
                .bind(now)
                .bind(ctx.actor.name.as_str())
                .bind(ctx.actor.request_id.as_deref())
                .bind(ctx.import_id)
                .bind(audit_id)
                .bind(audit_line)
                .execute(&mut *tx)
                .await?;
        }
        let (skipped, duplicates) = if conflicts.is_empty() {
            (0, Vec::new())
        } else {
            let keys: Vec<&str> = conflicts.iter().map(|&i| rows[i].key()).collect();
            let here: Vec<(String, Option<i64>)> = sqlx::query_as(CREATED_BY_IMPORT)
                .bind(keys)
                .bind(ctx.started)
                .bind(ctx.import_id)
                .fetch_all(&mut *tx)
                .await?;
            classify(&conflicts, rows, &here)
        };
        tx.commit().await?;
        Ok(ChunkOutcome {
            created: created.len() as u64,
            skipped,
            duplicates,
        })
    }
}

mod sqlite {
    //! SQLite: multi-row `VALUES` statements, as many rows per statement as the parameter limit
    //! allows, inside the chunk's transaction (the single writer is held only that long).
    //!
    //! Placeholders are anonymous `?`, bound in order, even where a value repeats on every row:
    //! SQLite looks numbered ones (`$n`) up by name in a linear list, which makes binding a
    //! 30,000-parameter statement quadratic (it was 95% of the import's time).

    use super::*;
    use g2p_domain::{NewBankAccount, NewRegId};
    use sqlx::{AssertSqlSafe, SqlitePool};

    const INSERT_REGISTRANTS_HEAD: &str = "INSERT INTO registrants (external_key, is_group, \
        name, given_name, family_name, addl_name, gender, birthdate, birthdate_not_exact, \
        birth_place, address, phone, phone_numbers, email, registration_date, disabled, \
        disabled_reason, group_kind, attributes, created_at, updated_at, version) VALUES ";
    const REGISTRANT_TUPLE: &str =
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)";
    const REGISTRANT_PARAMS: usize = 21;
    const INSERT_REGISTRANTS_TAIL: &str =
        " ON CONFLICT (external_key) DO NOTHING RETURNING id, external_key";

    const INSERT_REG_IDS_HEAD: &str = "INSERT INTO reg_ids (registrant_id, id_type_id, value, \
        expiry_date, status, description, created_at, updated_at) VALUES ";
    const REG_ID_TUPLE: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
    const REG_ID_PARAMS: usize = 8;

    const INSERT_BANK_HEAD: &str = "INSERT INTO bank_accounts (registrant_id, account_number, \
        iban, bank_code, bic, account_holder_name, created_at) VALUES ";
    const BANK_TUPLE: &str = "(?, ?, ?, ?, ?, ?, ?)";
    const BANK_PARAMS: usize = 7;

    const INSERT_AUDIT_HEAD: &str = "INSERT INTO audit_log (at, actor, action, entity, \
        entity_id, registrant_id, request_id, before, after) VALUES ";
    const AUDIT_TUPLE: &str =
        "(?, ?, 'import', 'registrant', ?, ?, ?, NULL, json_object('import', ?, 'line', ?))";
    const AUDIT_PARAMS: usize = 7;

    const CREATED_BY_IMPORT_HEAD: &str = "SELECT r.external_key, \
        CAST(json_extract(a.after, '$.line') AS INTEGER) \
        FROM registrants r JOIN audit_log a ON a.registrant_id = r.id \
        WHERE r.created_at >= ? AND a.action = 'import' AND a.entity = 'registrant' \
        AND json_extract(a.after, '$.import') = ? AND r.external_key IN (";

    /// `head`, then `tuple` `rows` times.
    fn multi_values(head: &str, tuple: &str, rows: usize) -> String {
        let mut sql = String::with_capacity(head.len() + rows * (tuple.len() + 2));
        sql.push_str(head);
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(tuple);
        }
        sql
    }

    fn rows_per_statement(per_row: usize, shared: usize) -> usize {
        ((SQLITE_MAX_PARAMS - shared) / per_row).max(1)
    }

    pub(super) async fn write_chunk(
        pool: &SqlitePool,
        rows: &[GoodRow],
        ctx: &WriteCtx<'_>,
    ) -> Result<ChunkOutcome, StoreError> {
        let now = Utc::now();
        let mut tx = pool.begin().await?;

        let mut id_of: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for part in rows.chunks(rows_per_statement(REGISTRANT_PARAMS, 0)) {
            let mut sql = multi_values(INSERT_REGISTRANTS_HEAD, REGISTRANT_TUPLE, part.len());
            sql.push_str(INSERT_REGISTRANTS_TAIL);
            let mut q = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(sql));
            for row in part {
                let r = &row.reg;
                q = q
                    .bind(row.key())
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
                    .bind(row.phones_json.as_str())
                    .bind(r.email.as_deref())
                    .bind(r.registration_date)
                    .bind(r.disabled)
                    .bind(r.disabled_reason.as_deref())
                    .bind(r.group_kind.as_deref())
                    .bind(row.attrs_json.as_str())
                    .bind(now)
                    .bind(now);
            }
            for (id, k) in q.fetch_all(&mut *tx).await? {
                id_of.insert(k, id);
            }
        }
        let mut created = Vec::with_capacity(id_of.len());
        let mut conflicts = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match id_of.get(row.key()) {
                Some(id) => created.push((row, *id)),
                None => conflicts.push(i),
            }
        }

        let ids: Vec<(i64, i64, &NewRegId)> = created
            .iter()
            .flat_map(|(row, id)| {
                row.reg
                    .ids
                    .iter()
                    .zip(&row.type_ids)
                    .map(move |(reg_id, t)| (*id, *t, reg_id))
            })
            .collect();
        for part in ids.chunks(rows_per_statement(REG_ID_PARAMS, 0)) {
            let sql = multi_values(INSERT_REG_IDS_HEAD, REG_ID_TUPLE, part.len());
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (id, t, reg_id) in part {
                q = q
                    .bind(*id)
                    .bind(*t)
                    .bind(reg_id.value.as_str())
                    .bind(reg_id.expiry_date)
                    .bind(reg_id.status.as_str())
                    .bind(reg_id.description.as_deref())
                    .bind(now)
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }

        let banks: Vec<(i64, &NewBankAccount)> = created
            .iter()
            .flat_map(|(row, id)| row.reg.bank_accounts.iter().map(move |b| (*id, b)))
            .collect();
        for part in banks.chunks(rows_per_statement(BANK_PARAMS, 0)) {
            let sql = multi_values(INSERT_BANK_HEAD, BANK_TUPLE, part.len());
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (id, b) in part {
                q = q
                    .bind(*id)
                    .bind(b.account_number.as_str())
                    .bind(b.iban.as_deref())
                    .bind(b.bank_code.as_deref())
                    .bind(b.bic.as_deref())
                    .bind(b.account_holder_name.as_deref())
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }

        for part in created.chunks(rows_per_statement(AUDIT_PARAMS, 0)) {
            let sql = multi_values(INSERT_AUDIT_HEAD, AUDIT_TUPLE, part.len());
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (row, id) in part {
                q = q
                    .bind(now)
                    .bind(ctx.actor.name.as_str())
                    .bind(*id)
                    .bind(*id)
                    .bind(ctx.actor.request_id.as_deref())
                    .bind(ctx.import_id)
                    .bind(row.line as i64);
            }
            q.execute(&mut *tx).await?;
        }

        let (skipped, duplicates) = if conflicts.is_empty() {
            (0, Vec::new())
        } else {
            let mut here: Vec<(String, Option<i64>)> = Vec::new();
            for part in conflicts.chunks(rows_per_statement(1, 2)) {
                let mut sql = String::from(CREATED_BY_IMPORT_HEAD);
                for i in 0..part.len() {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                }
                sql.push(')');
                let mut q = sqlx::query_as::<_, (String, Option<i64>)>(AssertSqlSafe(sql))
                    .bind(ctx.started)
                    .bind(ctx.import_id);
                for &i in part {
                    q = q.bind(rows[i].key());
                }
                here.extend(q.fetch_all(&mut *tx).await?);
            }
            classify(&conflicts, rows, &here)
        };
        tx.commit().await?;
        Ok(ChunkOutcome {
            created: created.len() as u64,
            skipped,
            duplicates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(data: &str) -> Vec<(u64, Vec<String>)> {
        let mut r = CsvRecords::new(data.as_bytes());
        let mut out = Vec::new();
        while let Some(info) = r.next_record().unwrap() {
            let fields = (0..r.len())
                .map(|i| String::from_utf8(r.field(i).to_vec()).unwrap())
                .collect();
            out.push((info.line, fields));
        }
        out
    }

    #[test]
    fn csv_lines_are_exact_with_blank_lines_crlf_and_quoted_newlines() {
        let data = "a,b\r\n1,2\r\n\r\n\"x\ny\",3\n4,\"5\"\n\n6,7";
        let got = records(data);
        let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 2, 4, 6, 8]);
        assert_eq!(got[2].1, vec!["x\ny".to_owned(), "3".to_owned()]);
        assert_eq!(got[4].1, vec!["6".to_owned(), "7".to_owned()]);
    }

    #[test]
    fn csv_record_buffer_is_bounded() {
        let big = "x".repeat(MAX_RECORD_BYTES + 10);
        let data = format!("a\n{big}\nok\n");
        let mut r = CsvRecords::new(data.as_bytes());
        assert!(!r.next_record().unwrap().unwrap().too_large);
        let info = r.next_record().unwrap().unwrap();
        assert!(info.too_large);
        assert_eq!(info.line, 2);
        assert!(r.out.len() <= MAX_RECORD_BYTES);
        let info = r.next_record().unwrap().unwrap();
        assert_eq!((info.line, r.field(0)), (3, &b"ok"[..]));
    }

    #[test]
    fn ndjson_lines_are_bounded() {
        let big = "y".repeat(MAX_RECORD_BYTES + 1);
        let data = format!("one\n{big}\r\ntwo");
        let mut r = io::BufReader::with_capacity(16, data.as_bytes());
        let mut buf = Vec::new();
        let max = MAX_RECORD_BYTES;
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, max).unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"one");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, max).unwrap(),
            Some(true)
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, max).unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"two");
        assert_eq!(read_line_bounded(&mut r, &mut buf, max).unwrap(), None);
    }

    #[test]
    fn header_rules() {
        let plan = |h: &[&str]| CsvPlan::from_header(h.iter().map(|s| s.to_string()).collect());
        assert!(
            plan(&[
                "external_key",
                "id:MOSIP VID",
                "attr:hh_size",
                "phone",
                "Disabled"
            ])
            .is_ok()
        );
        let e = plan(&["external_key", "nmae"]).err().unwrap();
        assert!(e.contains("unknown column \"nmae\" (column 2)"), "{e}");
        assert!(plan(&["name"]).err().unwrap().contains("no external_key"));
        assert!(
            plan(&["external_key", "id:vid", "id:VID"])
                .err()
                .unwrap()
                .contains("repeats")
        );
        assert!(plan(&["external_key", "id:"]).is_err());
    }

    #[test]
    fn attr_values_and_booleans() {
        assert_eq!(attr_value("42"), json!(42));
        assert_eq!(attr_value("-3.5"), json!(-3.5));
        assert_eq!(attr_value("true"), json!(true));
        assert_eq!(attr_value("007"), json!("007"));
        assert_eq!(
            attr_value("123456789012345678901234"),
            json!("123456789012345678901234")
        );
        assert_eq!(attr_value("north"), json!("north"));
        assert_eq!(parse_bool("YES"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn json_rows_name_the_failing_field() {
        let e = parse_json_row(br#"{"external_key":"a","ids":[{"id_type":"X","value":1}]}"#)
            .unwrap_err();
        assert!(e.0.keys().any(|k| k.starts_with("ids[0]")), "{e:?}");
        let e = parse_json_row(br#"{"external_key":"a","nmae":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("nmae"), "{e:?}");
        let e = parse_json_row(br#"{"external_key":"a"} trailing"#).unwrap_err();
        assert!(e.0.contains_key("json"));
    }
}
