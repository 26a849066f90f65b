//! `g2p demo`: an embedded registry with realistic synthetic households, served at once.
//! Generation is deterministic (seeded), so every demo shows the same people.

use anyhow::Context;
use chrono::{Duration, NaiveDate, Utc};
use g2p_domain::{
    BankAccountInput, MembershipInput, PhoneNumberInput, RegIdInput, RegistrantInput, Role,
};
use g2p_store::Store;
use g2p_store::audit::Actor;
use serde_json::json;

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

/// Builds the synthetic registry into `store`: households (groups) of 1–7 members with a head,
/// IDs (some with a MOSIP VID, some already tokenised), phones and bank accounts.
pub async fn populate(store: &Store, individuals: usize) -> anyhow::Result<usize> {
    let actor = Actor::system("demo");
    let today = Utc::now().date_naive();
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut made = 0usize;
    let mut household = 0usize;
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
            // About a third hold a MOSIP VID awaiting tokenisation; a few are already tokenised.
            if g.chance(35) {
                ids.push(RegIdInput {
                    id_type: "MOSIP VID".into(),
                    value: g.digits(16),
                    ..Default::default()
                });
            } else if g.chance(10) {
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

pub async fn run(cfg: Config, individuals: usize) -> anyhow::Result<()> {
    let app = App::start(&cfg, telemetry::init_metrics()).await?;
    if app.store.count_registrants().await? == 0 {
        eprintln!("creating the demo registry ({individuals} individuals)…");
        let n = populate(&app.store, individuals)
            .await
            .context("cannot create the demo data")?;
        eprintln!("created {n} individuals in households");
    }
    let (_, key) = app
        .store
        .create_api_key("demo", Role::Admin, &Actor::system("demo"))
        .await?;
    println!("g2p demo is running.");
    println!("  console:  {}/", app.url());
    println!("  API:      {}/api/v1/registrants", app.url());
    println!("  API key:  {key}   (admin; paste it into the console sign-in)");
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    app.stop().await;
    Ok(())
}
