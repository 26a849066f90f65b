//! Deterministic generation of a realistic registration form and its submissions, for demos,
//! load tests and paging tests. Uses its own SplitMix64 generator so that a seed gives the same
//! data whatever the version of `rand`. Does not touch HTTP.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde_json::{Value, json};

use super::model::{Actor, Field, Form, FormSpec, Inner, Project, Submission, millis};
use super::wire::sha1_hex;

/// Email of the Administrator created by [`super::OdkSim::generate`].
pub const DEFAULT_EMAIL: &str = "admin@example.test";
/// Password of the Administrator created by [`super::OdkSim::generate`].
pub const DEFAULT_PASSWORD: &str = "odk-sim-password";
/// `xmlFormId` of the generated registration form (in project 1).
pub const REGISTRATION_FORM: &str = "registration";

const FORM_VERSION: &str = "2026010101";
const USER_AGENT: &str =
    "org.odk.collect.android/v2025.2.3 Dalvik/2.1.0 (Linux; U; Android 13; SM-A145F Build/TP1A)";

/// The generated registration form: top-level person fields, an `address` group
/// (`address/district`, `address/village`), a geopoint and `meta/instanceID`.
pub fn registration_form() -> FormSpec {
    let f = Field::new;
    FormSpec {
        xml_form_id: REGISTRATION_FORM.to_owned(),
        name: Some("Beneficiary Registration".to_owned()),
        version: FORM_VERSION.to_owned(),
        fields: vec![
            f("/given_name", "string"),
            f("/family_name", "string"),
            f("/gender", "string"),
            f("/birth_date", "date"),
            f("/phone", "string"),
            f("/vid", "string"),
            f("/household_size", "int"),
            f("/location", "geopoint"),
            f("/address", "structure"),
            f("/address/district", "string"),
            f("/address/village", "string"),
            f("/meta", "structure"),
            f("/meta/instanceID", "string"),
        ],
    }
}

/// Stand-ins for the form digests (`hash`, `sha`, `sha256`) Central computes over the XForm XML,
/// which the simulator does not have: stable hex strings of the right lengths.
pub(crate) fn form_digests(xml_form_id: &str, version: &str) -> (String, String, String) {
    let a = sha1_hex(format!("{xml_form_id}@{version}#hash").as_bytes());
    let b = sha1_hex(format!("{xml_form_id}@{version}#sha").as_bytes());
    let c = format!(
        "{}{}",
        sha1_hex(format!("{xml_form_id}@{version}#sha256a").as_bytes()),
        sha1_hex(format!("{xml_form_id}@{version}#sha256b").as_bytes())
    );
    (
        a.chars().take(32).collect(),
        b,
        c.chars().take(64).collect(),
    )
}

/// SplitMix64: tiny, fast, and stable across library versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or("")
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + u8::try_from(self.below(10)).unwrap_or(0)))
            .collect()
    }

    fn uuid(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// A float in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        // 53 random bits → [0, 1).
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        lo + unit * (hi - lo)
    }
}

const FEMALE: &[&str] = &[
    "Amina",
    "Grace",
    "Fatuma",
    "Wanjiru",
    "Achieng",
    "Mary",
    "Esther",
    "Halima",
    "Nafula",
    "Aisha",
    "Lucía",
    "Priya",
    "Nguyen Thi",
    "Chiamaka",
    "Zainab",
    "Joy",
    "Mercy",
    "Faith",
    "Rehema",
    "Awino",
];
const MALE: &[&str] = &[
    "Jean",
    "Otieno",
    "Kamau",
    "Hassan",
    "Juma",
    "Peter",
    "Samuel",
    "Mohamed",
    "Wafula",
    "Kiprotich",
    "José",
    "Ravi",
    "Chinedu",
    "Ibrahim",
    "Daniel",
    "Brian",
    "Omondi",
    "Mwangi",
    "Abdi",
    "Kariuki",
];
const FAMILY: &[&str] = &[
    "Odhiambo",
    "Mwangi",
    "Wanjala",
    "Kiptoo",
    "Ochieng",
    "Njoroge",
    "Mohamed",
    "Ali",
    "Okafor",
    "Diallo",
    "Kamau",
    "Achieng",
    "Wekesa",
    "Cheruiyot",
    "Mutua",
    "Otieno",
    "Fernández",
    "N'Diaye",
    "Omar",
    "Barasa",
];
const DISTRICTS: &[(&str, &[&str])] = &[
    ("Kisumu", &["Kondele", "Nyalenda", "Manyatta", "Obunga"]),
    ("Kakamega", &["Lurambi", "Shinyalu", "Malava"]),
    ("Garissa", &["Dadaab", "Balambala", "Hulugho"]),
    ("Kilifi", &["Mtwapa", "Mariakani", "Rabai", "Ganze"]),
    ("Turkana", &["Lodwar", "Kakuma", "Lokichogio"]),
];

/// Fills an empty state with the generated user, app users, project, form and submissions.
pub(crate) fn populate(
    inner: &mut Inner,
    seed: u64,
    n: usize,
    start: DateTime<Utc>,
    interval: TimeDelta,
) {
    let mut rng = Rng(seed);
    let start = millis(start);
    let epoch = start - TimeDelta::days(30);
    inner.actors.insert(
        1,
        Actor {
            id: 1,
            kind: "user",
            display_name: "ODK Administrator".to_owned(),
            email: Some(DEFAULT_EMAIL.to_owned()),
            password: Some(DEFAULT_PASSWORD.to_owned()),
            created_at: epoch,
            last_login_at: None,
            admin: true,
            viewer_of: Default::default(),
        },
    );
    let mut devices = Vec::new();
    for k in 1..=3u64 {
        inner.actors.insert(
            k + 1,
            Actor {
                id: k + 1,
                kind: "field_key",
                display_name: format!("Enumerator {k}"),
                email: None,
                password: None,
                created_at: epoch,
                last_login_at: None,
                admin: false,
                viewer_of: Default::default(),
            },
        );
        devices.push(format!(
            "collect:{}",
            sha1_hex(format!("{seed}/{k}").as_bytes())
                .chars()
                .take(16)
                .collect::<String>()
        ));
    }

    let spec = registration_form();
    let (hash, sha, sha256) = form_digests(&spec.xml_form_id, &spec.version);
    let mut form = Form {
        xml_form_id: spec.xml_form_id,
        name: spec.name,
        version: spec.version,
        state: "open".to_owned(),
        created_at: epoch,
        updated_at: Some(epoch),
        published_at: Some(epoch),
        hash,
        sha,
        sha256,
        fields: spec.fields,
        submissions: Vec::with_capacity(n),
    };

    let step_ms = interval.num_milliseconds().max(0);
    for i in 0..n {
        let jitter = if step_ms >= 2 {
            rng.below(u64::try_from(step_ms / 2).unwrap_or(0))
        } else {
            0
        };
        let offset = step_ms.saturating_mul(i64::try_from(i).unwrap_or(i64::MAX));
        let at = start
            + TimeDelta::milliseconds(offset.saturating_add(i64::try_from(jitter).unwrap_or(0)));
        let data = submission_data(&mut rng);
        let instance_id = format!("uuid:{}", rng.uuid());
        let mut data = data;
        super::model::set_path(
            &mut data,
            "/meta/instanceID",
            Value::String(instance_id.clone()),
        );
        let enumerator = rng.below(3);
        form.submissions.push(Submission {
            seq: inner.next_seq,
            instance_id: instance_id.clone(),
            current_instance_id: instance_id,
            data,
            created_at: at,
            version_created_at: at,
            updated_at: None,
            deleted_at: None,
            submitter_id: Some(enumerator + 2),
            device_id: devices
                .get(usize::try_from(enumerator).unwrap_or(0))
                .cloned(),
            user_agent: Some(USER_AGENT.to_owned()),
            review_state: None,
            edits: 0,
            form_version: FORM_VERSION.to_owned(),
            attachments_present: 0,
            attachments_expected: 0,
            status: None,
        });
        inner.next_seq += 1;
    }

    inner.projects.insert(
        1,
        Project {
            id: 1,
            name: "Social Registry".to_owned(),
            actee_id: rng.uuid().to_string(),
            description: Some("Generated by g2p-sim".to_owned()),
            created_at: epoch,
            forms: vec![form],
        },
    );
}

fn submission_data(rng: &mut Rng) -> Value {
    let gender = match rng.below(100) {
        0..=47 => "female",
        48..=95 => "male",
        _ => "other",
    };
    let given = match gender {
        "female" => rng.pick(FEMALE),
        "male" => rng.pick(MALE),
        _ => {
            if rng.below(2) == 0 {
                rng.pick(FEMALE)
            } else {
                rng.pick(MALE)
            }
        }
    };
    let family = rng.pick(FAMILY);
    let birth = NaiveDate::from_ymd_opt(1940, 1, 1).unwrap_or_default()
        + TimeDelta::days(i64::try_from(rng.below(25_202)).unwrap_or(0)); // up to 2008-12-31
    let phone = if rng.below(10) == 0 {
        Value::Null
    } else {
        Value::String(format!("+2547{}", rng.digits(8)))
    };
    let vid = format!("{}{}", 1 + rng.below(9), rng.digits(15));
    let household = 1 + rng.below(12);
    let (district, villages) = DISTRICTS
        .get(usize::try_from(rng.below(DISTRICTS.len() as u64)).unwrap_or(0))
        .copied()
        .unwrap_or(("", &[]));
    let village = rng.pick(villages);
    let lat = rng.range(-4.5, 4.5);
    let lon = rng.range(33.5, 41.5);
    let alt = rng.range(0.0, 2500.0);
    let acc = rng.range(3.0, 20.0);
    json!({
        "given_name": given,
        "family_name": family,
        "gender": gender,
        "birth_date": format!("{:04}-{:02}-{:02}", birth.year(), birth.month(), birth.day()),
        "phone": phone,
        "vid": vid,
        "household_size": household.to_string(),
        "location": format!("{lat:.7} {lon:.7} {alt:.1} {acc:.1}"),
        "address": { "district": district, "village": village },
        "meta": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        let t = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
        let mut a = Inner::default();
        let mut b = Inner::default();
        let mut c = Inner::default();
        populate(&mut a, 7, 20, t, TimeDelta::minutes(3));
        populate(&mut b, 7, 20, t, TimeDelta::minutes(3));
        populate(&mut c, 8, 20, t, TimeDelta::minutes(3));
        let ids = |i: &Inner| -> Vec<(String, Value, DateTime<Utc>)> {
            i.projects[&1].forms[0]
                .submissions
                .iter()
                .map(|s| (s.instance_id.clone(), s.data.clone(), s.created_at))
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
        let subs = &a.projects[&1].forms[0].submissions;
        assert!(subs.windows(2).all(|w| w[0].created_at < w[1].created_at));
        assert!(
            subs.iter()
                .all(|s| s.data["vid"].as_str().is_some_and(|v| v.len() == 16))
        );
    }
}
