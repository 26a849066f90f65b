//! `g2p demo`: an embedded registry with realistic synthetic households, served at once, and
//! tokenised through the Registry MTS Connector against `g2p mts` running in-process (mock
//! authenticator). `g2p demo --once [--json]` does the same without serving and prints a
//! summary. Generation is deterministic (seeded), so every demo shows the same people.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use chrono::{Duration, NaiveDate, Utc};
use g2p_app::mts::connectors;
use g2p_domain::filter::Domain;
use g2p_domain::mts_connector::{MtsConnectorInput, MtsConnectorSettings};
use g2p_domain::{
    BankAccountInput, MembershipInput, PhoneNumberInput, RegIdInput, RegistrantInput, Role,
};
use g2p_mts::{MockAuthenticator, MtsConfig, MtsService};
use g2p_store::Store;
use g2p_store::audit::Actor;
use g2p_store::mts::RunStatus;
use serde::Serialize;
use serde_json::{Value, json};

use crate::demo_odk::{self, OdkDemoReport};
use crate::{App, Config, shutdown_signal, telemetry};

const GIVEN_F: &[&str] = &[
    "Amina", "Grace", "Fatima", "Maria", "Aisha", "Joy", "Esther", "Mercy", "Halima", "Rose",
    "Ana", "Lucia", "Nadia", "Zainab", "Ruth", "Sarah", "Leila", "Hope", "Irene", "Precious",
];
const GIVEN_M: &[&str] = &[
    "John", "Ibrahim", "Samuel", "Peter", "Musa", "David", "Joseph", "Ali", "Daniel", "Moses",
    "Carlos", "Jose", "Emmanuel", "Yusuf", "Paul", "Isaac", "Omar", "Felix", "Victor", "Kofi",
];
const FAMILY: &[&str] = &[
    "Okafor", "Mensah", "Banda", "Mwangi", "Diallo", "Kamara", "Phiri", "Ndlovu", "Otieno",
    "Traore", "Santos", "Garcia", "Hassan", "Mohamed", "Tembo", "Abebe", "Kariuki", "Moyo",
    "Achieng", "Bello", "Osei", "Sesay", "Juma", "Lungu", "Cruz",
];
const PLACES: &[&str] = &[
    "Riverside",
    "Hilltop",
    "Lakeview",
    "Green Valley",
    "Market Town",
    "Eastfield",
    "Northgate",
    "Sunrise",
    "Old Mill",
    "Palm Grove",
];
const DISTRICTS: &[&str] = &["Central", "Northern", "Southern", "Eastern", "Western"];

/// A small deterministic generator (xorshift): no dependency on a particular `rand` API, and
/// the same data on every machine.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn digits(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        s.push(char::from(b'1' + (self.below(9) as u8)));
        for _ in 1..n {
            s.push(char::from(b'0' + (self.below(10) as u8)));
        }
        s
    }
}

/// The `n`-th VID of the demo (1-based). Against `g2p mts` with the mock authenticator's
/// default failures, every 10th fails demographic authentication (`9999…`, IDA-DEA-001), every
/// 25th is unknown to IDA (`8888…`, IDA-MLC-018), and every 40th repeats an earlier person's
/// VID, so that two registrants end up with the same token (a possible duplicate).
fn demo_vid(g: &mut Gen, n: usize, good: &mut Vec<String>) -> String {
    if n % 10 == 3 {
        format!("9999{}", g.digits(12))
    } else if n % 25 == 12 {
        format!("8888{}", g.digits(12))
    } else if n % 40 == 20
        && let Some(earlier) = good.get(good.len() / 2)
    {
        earlier.clone()
    } else {
        let mut v = g.digits(16);
        while v.starts_with("9999") || v.starts_with("8888") {
            v = g.digits(16);
        }
        good.push(v.clone());
        v
    }
}

/// Builds the synthetic registry into `store`: households (groups) of 1–7 members with a head,
/// IDs (most individuals with a MOSIP VID, a few failing or duplicated on purpose, see
/// [`demo_vid`]; some already tokenised), phones and bank accounts. Every individual has a
/// name, gender, birthdate and address: what MTS requires by default.
pub async fn populate(store: &Store, individuals: usize) -> anyhow::Result<usize> {
    let actor = Actor::system("demo");
    let today = Utc::now().date_naive();
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut made = 0usize;
    let mut household = 0usize;
    let mut vids = 0usize;
    let mut good_vids: Vec<String> = Vec::new();
    while made < individuals {
        household += 1;
        let family = g.pick(FAMILY);
        let village = g.pick(PLACES);
        let district = g.pick(DISTRICTS);
        let address = format!(
            "{} {} Road, {village}, {district} District",
            1 + g.below(200),
            g.pick(PLACES)
        );
        let size = (1 + g.below(7)).min(individuals - made);
        // Households were registered over the last ~2.5 years; members on the same day.
        let registered = today - Duration::days(g.below(900) as i64);
        let group = RegistrantInput {
            external_key: Some(format!("demo-hh-{household}")),
            is_group: true,
            name: Some(format!("{family} household, {village}")),
            address: Some(address.clone()),
            group_kind: Some("household".into()),
            registration_date: Some(registered.to_string()),
            attributes: json!({"district": district, "village": village, "household_size": size})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..Default::default()
        }
        .parse(today)?;
        let group = store.create_registrant(&group, &actor).await?;
        for m in 0..size {
            let female = g.chance(52);
            let given = if female {
                g.pick(GIVEN_F)
            } else {
                g.pick(GIVEN_M)
            };
            let age_days = if m == 0 {
                365 * (20 + g.below(50)) as i64
            } else {
                365 * g.below(70) as i64 + g.below(365) as i64
            };
            let birthdate = today - Duration::days(age_days);
            let mut ids = vec![RegIdInput {
                id_type: "NATIONAL ID".into(),
                value: format!("NID-{}", g.digits(9)),
                ..Default::default()
            }];
            // Most hold a MOSIP VID awaiting tokenisation; a few are already tokenised.
            if g.chance(75) {
                vids += 1;
                ids.push(RegIdInput {
                    id_type: "MOSIP VID".into(),
                    value: demo_vid(&mut g, vids, &mut good_vids),
                    ..Default::default()
                });
            } else if g.chance(25) {
                ids.push(RegIdInput {
                    id_type: "MOSIP AUTH TOKEN".into(),
                    value: format!("{:032x}", g.next() as u128 * g.next() as u128),
                    ..Default::default()
                });
            }
            let mut bank_accounts = Vec::new();
            if m == 0 && g.chance(70) {
                bank_accounts.push(BankAccountInput {
                    account_number: g.digits(12),
                    bank_code: Some(format!("BANK{}", 1 + g.below(5))),
                    account_holder_name: Some(format!("{given} {family}")),
                    ..Default::default()
                });
            }
            let phone_numbers = if age_days > 365 * 16 && g.chance(80) {
                vec![PhoneNumberInput {
                    phone_no: format!("+2547{}", g.digits(8)),
                    date_collected: None,
                }]
            } else {
                Vec::new()
            };
            let email = (age_days > 365 * 18 && g.chance(25)).then(|| {
                format!(
                    "{}.{}{}@example.org",
                    given.to_lowercase(),
                    family.to_lowercase(),
                    g.below(100)
                )
            });
            let person = RegistrantInput {
                external_key: Some(format!("demo-ind-{}", made + 1)),
                given_name: Some(given.into()),
                family_name: Some(family.into()),
                gender: Some(if female { "Female" } else { "Male" }.into()),
                birthdate: Some(birthdate.to_string()),
                birthdate_not_exact: g.chance(10),
                birth_place: Some(g.pick(PLACES).into()),
                address: Some(address.clone()),
                phone_numbers,
                email,
                registration_date: Some(registered.max(birthdate).to_string()),
                disabled: g.chance(3),
                attributes: json!({
                    "district": district,
                    "disability": g.chance(6),
                    "monthly_income": 20 * g.below(40),
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
                ids,
                bank_accounts,
                ..Default::default()
            }
            .parse(today)?;
            let person = store.create_registrant(&person, &actor).await?;
            let kind = if m == 0 { "head" } else { "member" };
            store
                .add_member(
                    group.registrant.id,
                    &MembershipInput {
                        individual_id: person.registrant.id,
                        kinds: vec![kind.into()],
                        start_date: Some(
                            NaiveDate::from_ymd_opt(2020, 1, 1)
                                .unwrap_or(today)
                                .to_string(),
                        ),
                        end_date: None,
                    }
                    .parse()?,
                    &actor,
                )
                .await?;
            made += 1;
        }
    }
    Ok(made)
}

/// What `g2p demo` does besides creating the registry.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Individuals to generate when the registry is empty.
    pub individuals: usize,
    /// Tokenise once, print a summary and exit, instead of serving.
    pub once: bool,
    /// With `once`: the summary as one JSON object on stdout.
    pub json: bool,
    /// With `once`: how long to wait for the tokenisation run to complete.
    pub timeout: std::time::Duration,
}

/// Submissions the ODK Central simulator is made with (plus two, see [`demo_odk::start_odk`]).
const ODK_SUBMISSIONS: usize = 40;

/// Name of the connector the demo creates (and finds again on the next start).
pub const DEMO_CONNECTOR: &str = "Demo: tokenise the registry";

/// Exit status of `g2p demo --once` when the run did not complete or its counts disagree.
pub const EXIT_INCOMPLETE: i32 = 2;

/// The outcome of one tokenisation run, as `g2p demo --once --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Individuals of the demo registry (not counting those the ODK import made).
    pub registrants: usize,
    /// Individuals holding a MOSIP VID before the run.
    pub with_vid: usize,
    /// Records the run sent to MTS.
    pub sent: i64,
    /// Records that came back with a token (stored as MOSIP AUTH TOKEN).
    pub tokenised: i64,
    /// Individuals whose VID was removed (holders before the run minus holders after).
    pub vids_removed: usize,
    /// Failed records by MTS error code.
    pub failed: BTreeMap<String, i64>,
    /// Tokens shared by more than one registrant.
    pub possible_duplicates: usize,
    pub run_status: RunStatus,
    /// From queueing the run to its end (or to the timeout).
    pub seconds: f64,
    /// The ODK import through the ODK MTS connector.
    pub odk: Option<OdkDemoReport>,
}

impl DemoReport {
    pub fn failed_total(&self) -> i64 {
        self.failed.values().sum()
    }

    /// Why the run does not count as a success, if it does not.
    pub fn problem(&self) -> Option<String> {
        if self.run_status != RunStatus::Completed {
            return Some(format!(
                "the tokenisation run did not complete (status {})",
                self.run_status
            ));
        }
        if self.sent != self.tokenised + self.failed_total() {
            return Some(format!(
                "sent {} records but {} came back tokenised and {} failed",
                self.sent,
                self.tokenised,
                self.failed_total()
            ));
        }
        self.odk.as_ref().and_then(OdkDemoReport::problem)
    }

    fn human(&self) -> String {
        let failed = if self.failed.is_empty() {
            "none".to_owned()
        } else {
            self.failed
                .iter()
                .map(|(code, n)| format!("{code}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} individuals, {} holding a MOSIP VID\n\
             sent to MTS: {}; tokenised: {} (VIDs removed: {}); failed: {} ({failed})\n\
             possible duplicates: {} token(s) shared by more than one registrant\n\
             run {} in {:.2} s",
            self.registrants,
            self.with_vid,
            self.sent,
            self.tokenised,
            self.vids_removed,
            self.failed_total(),
            self.possible_duplicates,
            self.run_status,
            self.seconds,
        ) + &self
            .odk
            .as_ref()
            .map(|o| format!("\n{}", o.human()))
            .unwrap_or_default()
    }
}

/// `g2p demo`: creates the registry on first start, starts `g2p mts` (mock authenticator with
/// its default failures) in-process, and tokenises the registry through a Registry MTS
/// Connector calling back this application. Serves until Ctrl-C, or with `once` waits for the
/// run and prints its summary. Returns the exit status.
pub async fn run(mut cfg: Config, opts: DemoOptions) -> anyhow::Result<i32> {
    // The run needs this process's worker, whatever the configuration says.
    cfg.run_worker = true;
    let app = App::start(&cfg, telemetry::init_metrics()).await?;
    if app.store.count_registrants().await? == 0 {
        eprintln!(
            "creating the demo registry ({} individuals)…",
            opts.individuals
        );
        let n = populate(&app.store, opts.individuals)
            .await
            .context("cannot create the demo data")?;
        eprintln!("created {n} individuals in households");
    }
    let (mts, mts_url) = start_mts().await?;
    let odk = demo_odk::start_odk(ODK_SUBMISSIONS).await?;
    let result = tokenise_and_report(&app, &mts_url, &odk, &opts).await;
    odk.abort();
    mts.shutdown().await;
    app.stop().await;
    result
}

async fn tokenise_and_report(
    app: &App,
    mts_url: &str,
    odk: &demo_odk::OdkDemo,
    opts: &DemoOptions,
) -> anyhow::Result<i32> {
    let store = &app.store;
    let registrants = count(
        store,
        &json!([
            ["is_group", "=", false],
            ["external_key", "=like", "demo-%"]
        ]),
    )
    .await?;
    let with_vid = count(store, &vid_holders()).await?;
    let connector = demo_connector(app, mts_url).await?;
    let odk_connector = demo_odk::demo_odk_connector(app, mts_url, odk).await?;
    let started = Instant::now();
    let run_id = start_run(store, connector).await?;
    let odk_run = demo_odk::start_odk_run(store, odk_connector, odk.since).await?;
    if !opts.once {
        serve_banner(app, mts_url, connector, run_id).await?;
        println!(
            "  ODK Central simulator: {}/  ({} / {}); importing: connector {odk_connector}, run {odk_run}",
            odk.url,
            g2p_sim::odk::DEFAULT_EMAIL,
            g2p_sim::odk::DEFAULT_PASSWORD
        );
        let reporter = {
            let store = store.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                // Serving: the run is reported when it ends, however long it takes.
                let day = std::time::Duration::from_secs(86_400);
                match report(
                    &store,
                    connector,
                    run_id,
                    registrants,
                    with_vid,
                    started,
                    day,
                )
                .await
                {
                    Ok(r) => println!("tokenisation through MTS finished:\n{}", indent(&r.human())),
                    Err(e) => tracing::warn!(error = %e, "demo: cannot report the run"),
                }
            })
        };
        shutdown_signal().await;
        reporter.abort();
        return Ok(0);
    }
    let mut r = report(
        store,
        connector,
        run_id,
        registrants,
        with_vid,
        started,
        opts.timeout,
    )
    .await?;
    r.odk = Some(demo_odk::odk_report(store, odk_run, started, opts.timeout).await?);
    let problem = r.problem();
    if opts.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("g2p demo: tokenised through MTS\n{}", indent(&r.human()));
    }
    std::io::stdout().flush()?;
    match problem {
        Some(p) => {
            eprintln!("g2p demo: {p}");
            Ok(EXIT_INCOMPLETE)
        }
        None => Ok(0),
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn serve_banner(app: &App, mts_url: &str, connector: i64, run_id: i64) -> anyhow::Result<()> {
    let (_, key) = app
        .store
        .create_api_key("demo", Role::Admin, &Actor::system("demo"))
        .await?;
    let url = app.url();
    println!("g2p demo is running.");
    println!("  console:  {url}/");
    println!("  API:      {url}/api/v1/registrants");
    println!("  API key:  {key}   (admin; paste it into the console sign-in)");
    println!("  MTS:      {mts_url}/   (g2p mts in-process, mock authenticator; VIDs 9999… fail)");
    println!("  tokenising the registry: connector {connector}, run {run_id}");
    println!(
        "            console {url}/mts/{connector}, API {url}/api/v1/mts/connectors/{connector}/runs"
    );
    println!("Press Ctrl-C to stop.");
    std::io::stdout().flush()?;
    Ok(())
}

/// `g2p mts` in-process on a free port: the mock authenticator with its default failures, on
/// an in-memory queue (never the registry's database).
async fn start_mts() -> anyhow::Result<(MtsService, String)> {
    let cfg = MtsConfig {
        poll_interval: std::time::Duration::from_millis(200),
        ..MtsConfig::default()
    };
    let auth = MockAuthenticator::new(&cfg.partner_id).with_default_failures();
    let svc = MtsService::start(cfg, "sqlite::memory:", Arc::new(auth))
        .await
        .context("cannot start g2p mts")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let (addr, _server) = match svc.serve(addr).await {
        Ok(s) => s,
        Err(e) => {
            svc.shutdown().await;
            return Err(anyhow::Error::new(e).context("cannot serve g2p mts"));
        }
    };
    Ok((svc, format!("http://{addr}")))
}

/// Individuals of the demo registry holding a MOSIP VID (not those the ODK import makes).
fn vid_holders() -> Value {
    json!([
        ["is_group", "=", false],
        ["external_key", "=like", "demo-%"],
        ["reg_ids.id_type", "=", "MOSIP VID"]
    ])
}

/// Registrants matching `filter` (an Odoo domain).
async fn count(store: &Store, filter: &Value) -> anyhow::Result<usize> {
    let domain = Domain::from_json(filter)?;
    let mut after = None;
    let mut n = 0;
    loop {
        let page = store.search_registrants(&domain, after, 1000).await?;
        n += page.items.len();
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Ok(n),
        }
    }
}

/// The demo's connector, created through the same validation as `POST /api/v1/mts/connectors`
/// (or found again and pointed at this start's MTS and receiver): registry input, all
/// individuals, callbacks in bulk to this application with a generated bearer secret.
async fn demo_connector(app: &App, mts_url: &str) -> anyhow::Result<i64> {
    let create = MtsConnectorInput {
        name: Some(DEMO_CONNECTOR.into()),
        mts_url: Some(mts_url.into()),
        callback_password: Some(generated_secret()),
        call_in_bulk: Some(true),
        chunk_size: Some(100),
        filter: Some(json!([["is_group", "=", false]])),
        ..Default::default()
    };
    let repoint = MtsConnectorInput {
        mts_url: Some(mts_url.into()),
        ..Default::default()
    };
    find_or_create_connector(app, create, repoint).await
}

/// A long random secret for a demo connector's callbacks.
pub(crate) fn generated_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The demo connector named in `create`: made from it (through the same use case as
/// `POST /api/v1/mts/connectors`) unless one of that name exists, then updated with `repoint`
/// and this application's receiver, since the ports of MTS, the simulators and the receiver
/// change from one start to the next.
pub(crate) async fn find_or_create_connector(
    app: &App,
    create: MtsConnectorInput,
    mut repoint: MtsConnectorInput,
) -> anyhow::Result<i64> {
    let store = &app.store;
    let actor = Actor::system("demo");
    let base = app.url();
    let receiver = move |id: i64| format!("{base}/api/v1/mts/callbacks/{id}");
    let wanted = create.name.clone().unwrap_or_default();
    let existing = connectors::list(store)
        .await?
        .into_iter()
        .find(|c| c.row.name == wanted);
    let id = match existing {
        Some(c) => c.id(),
        None => connectors::create(store, &app.state.secrets, &actor, create, Some(&receiver))
            .await
            .map_err(|e| anyhow!("{wanted}: {e}"))?
            .id(),
    };
    repoint.callback_url = Some(receiver(id));
    connectors::update(store, &app.state.secrets, &actor, id, repoint)
        .await
        .map_err(|e| anyhow!("{wanted}: {e}"))?;
    Ok(id)
}

/// Queues a delta run of the connector for this application's worker, as
/// `POST /api/v1/mts/connectors/{id}/runs` does; when a run of it is still going (from a
/// previous start), follows that one instead.
async fn start_run(store: &Store, connector: i64) -> anyhow::Result<i64> {
    let run = connectors::run_or_follow(store, &Actor::system("demo"), connector).await?;
    Ok(run)
}

/// The run once it has ended, or as it is when `timeout` (from `started`) has passed.
pub(crate) async fn wait_run_end(
    store: &Store,
    run_id: i64,
    started: Instant,
    timeout: std::time::Duration,
) -> anyhow::Result<g2p_store::mts::MtsRun> {
    loop {
        let run = store.get_mts_run(run_id).await?;
        let ended = run.status.is_final();
        if ended || started.elapsed() >= timeout {
            return Ok(run);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Waits (until `timeout`) for the run to end, then counts what it did.
async fn report(
    store: &Store,
    connector: i64,
    run_id: i64,
    registrants: usize,
    with_vid: usize,
    started: Instant,
    timeout: std::time::Duration,
) -> anyhow::Result<DemoReport> {
    let run = wait_run_end(store, run_id, started, timeout).await?;
    let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let progress = store.mts_run_progress(run_id).await?;
    let mut failed: BTreeMap<String, i64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store
            .list_mts_failures(connector, Some(run_id), after, 500)
            .await?;
        for f in &page {
            let code = f.error_code.clone().unwrap_or_else(|| "unknown".into());
            *failed.entry(code).or_default() += 1;
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = last.registrant_id,
            _ => break,
        }
    }
    let row = store.get_mts_connector(connector).await?;
    let settings: MtsConnectorSettings = row.settings.0;
    let possible_duplicates = store
        .mts_possible_duplicates(&settings.token_id_type, 500)
        .await?
        .len();
    let vids_after = count(store, &vid_holders()).await?;
    Ok(DemoReport {
        registrants,
        with_vid,
        sent: run.sent,
        tokenised: progress.processed,
        vids_removed: with_vid.saturating_sub(vids_after),
        failed,
        possible_duplicates,
        run_status: run.status,
        seconds,
        odk: None,
    })
}
