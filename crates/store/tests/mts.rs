//! MTS connector state on every backend: claiming a chunk, callbacks (success, failure, replay,
//! late duplicate, unknown reference), abandoning a chunk MTS refused, two racing claims.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use g2p_domain::filter::Domain;
use g2p_domain::mts_connector::MtsConnectorSettings;
use g2p_domain::{Registrant, RegistrantInput};
use g2p_store::audit::Actor;
use g2p_store::mts::{MtsCallbackItem, MtsCallbackPolicy, MtsSelection, RunKind, RunStatus};
use g2p_store::{Store, StoreError};
use serde_json::{Map, json};

const VID: &str = "MOSIP VID";
const TOKEN: &str = "MOSIP AUTH TOKEN";

async fn person(store: &Store, i: usize, vid: Option<&str>) -> i64 {
    let mut ids = vec![];
    if let Some(v) = vid {
        ids.push(json!({"id_type": VID, "value": v}));
    }
    let input: RegistrantInput = serde_json::from_value(json!({
        "given_name": format!("Given{i}"), "family_name": "Mts", "gender": "Female",
        "birthdate": "1990-01-31", "ids": ids,
    }))
    .unwrap();
    let new = input.parse(chrono::Utc::now().date_naive()).unwrap();
    store
        .create_registrant(&new, &Actor::system("test"))
        .await
        .unwrap()
        .registrant
        .id
}

async fn connector(store: &Store) -> i64 {
    store
        .create_mts_connector(
            "c",
            &MtsConnectorSettings::default(),
            |_| None,
            None,
            None,
            &Actor::system("test"),
        )
        .await
        .unwrap()
        .id
}

fn selection<'a>(connector_id: i64, filter: &'a Domain) -> MtsSelection<'a> {
    MtsSelection {
        connector_id,
        vid_id_type: VID,
        token_id_type: TOKEN,
        filter,
        targets_of_run: None,
        max_attempts: 3,
        ignore_retry_time: false,
    }
}

fn policy(connector_id: i64) -> MtsCallbackPolicy<'static> {
    MtsCallbackPolicy {
        connector_id,
        vid_id_type: VID,
        token_id_type: TOKEN,
        remove_vid: true,
        max_attempts: 3,
        backoff_minutes: 60,
    }
}

fn ok(reference: &str, token: &str) -> MtsCallbackItem {
    let mut extra = Map::new();
    extra.insert("kyc_verified".into(), json!(true));
    MtsCallbackItem {
        reference: reference.into(),
        status: "processed".into(),
        token: Some(token.into()),
        error_code: None,
        error_message: None,
        extra,
    }
}

fn failed(reference: &str) -> MtsCallbackItem {
    MtsCallbackItem {
        reference: reference.into(),
        status: "error".into(),
        token: None,
        error_code: Some("IDA-DEA-001".into()),
        error_message: Some("Demographic data name did not match".into()),
        extra: Map::new(),
    }
}

async fn ids_of(store: &Store, id: i64) -> Vec<(String, String)> {
    store
        .list_reg_ids(id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id_type, r.value))
        .collect()
}

#[tokio::test]
async fn claim_callback_and_delta() {
    for store in g2p_testkit::backends().await {
        let a = person(&store, 1, Some("1111")).await;
        let b = person(&store, 2, Some("2222")).await;
        let _no_vid = person(&store, 3, None).await;
        let c = connector(&store).await;
        let all = Domain::parse_str("[]").unwrap();
        let run = store
            .create_mts_run(c, RunKind::Delta, None, None, "test")
            .await
            .unwrap();
        // A second run of the same connector waits for the first.
        assert!(matches!(
            store
                .create_mts_run(c, RunKind::Delta, None, None, "test")
                .await,
            Err(StoreError::Conflict { .. })
        ));

        let claim = store
            .claim_mts_chunk(run.id, 0, &selection(c, &all), 10)
            .await
            .unwrap();
        let chunk = claim.chunk_id.expect("a chunk");
        assert_eq!(claim.records.len(), 2, "only registrants with a VID");
        assert!(!claim.more);
        let ra = claim.records.iter().find(|r| r.registrant.id == a).unwrap();
        let rb = claim.records.iter().find(|r| r.registrant.id == b).unwrap();
        assert_eq!(ra.vid, "1111");
        assert_ne!(ra.reference, a.to_string(), "the reference is opaque");
        store
            .mark_mts_chunk_submitted(chunk, "req-1", chrono::Utc::now(), run.id, claim.cursor, 2)
            .await
            .unwrap();

        // In flight: a new claim takes nothing.
        let again = store
            .claim_mts_chunk(run.id, 0, &selection(c, &all), 10)
            .await
            .unwrap();
        assert!(again.records.is_empty() && again.chunk_id.is_none());

        // Unknown reference: the whole callback is refused, nothing applied.
        let err = store
            .apply_mts_callbacks(
                &policy(c),
                &[ok(&ra.reference, "TOK-A"), ok("nope", "X")],
                &Actor::system("mts"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Validation(_)), "{err:?}");
        assert_eq!(ids_of(&store, a).await, vec![(VID.into(), "1111".into())]);

        let report = store
            .apply_mts_callbacks(
                &policy(c),
                &[ok(&ra.reference, "TOK-A"), failed(&rb.reference)],
                &Actor::system("mts"),
            )
            .await
            .unwrap();
        assert_eq!((report.applied, report.ignored), (2, 0));
        // Success: token stored, VID removed, extra field in the attributes.
        assert_eq!(
            ids_of(&store, a).await,
            vec![(TOKEN.into(), "TOK-A".into())]
        );
        let reg: Registrant = store.get_registrant(a).await.unwrap();
        assert_eq!(reg.attributes["kyc_verified"], json!(true));
        // Failure: VID kept, code recorded, retry later.
        assert_eq!(ids_of(&store, b).await, vec![(VID.into(), "2222".into())]);
        let failures = store.list_mts_failures(c, None, 0, 10).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].error_code.as_deref(), Some("IDA-DEA-001"));
        assert!(failures[0].next_retry_at.is_some());

        // Replay and late duplicate: nothing changes.
        let report = store
            .apply_mts_callbacks(
                &policy(c),
                &[ok(&ra.reference, "OTHER"), ok(&rb.reference, "LATE")],
                &Actor::system("mts"),
            )
            .await
            .unwrap();
        assert_eq!((report.applied, report.ignored), (0, 2));
        assert_eq!(
            ids_of(&store, a).await,
            vec![(TOKEN.into(), "TOK-A".into())]
        );
        assert_eq!(ids_of(&store, b).await, vec![(VID.into(), "2222".into())]);

        let progress = store.mts_run_progress(run.id).await.unwrap();
        assert_eq!(
            (progress.pending, progress.processed, progress.failed),
            (0, 1, 1)
        );

        // The delta: the failed one is not due yet; a new registrant is taken.
        store
            .set_mts_run_status(run.id, RunStatus::Submitted, None)
            .await
            .unwrap();
        assert_eq!(store.complete_mts_runs().await.unwrap(), 1);
        let d = person(&store, 4, Some("4444")).await;
        let run2 = store
            .create_mts_run(c, RunKind::Delta, None, None, "test")
            .await
            .unwrap();
        let claim = store
            .claim_mts_chunk(run2.id, 0, &selection(c, &all), 10)
            .await
            .unwrap();
        let got: Vec<i64> = claim.records.iter().map(|r| r.registrant.id).collect();
        assert_eq!(got, vec![d]);
        // MTS refuses the chunk: nothing stays sent, the registrant is free again.
        store
            .abandon_mts_chunk(claim.chunk_id.unwrap(), "MTS unavailable")
            .await
            .unwrap();
        assert_eq!(store.mts_run_progress(run2.id).await.unwrap().pending, 0);
        // A manual retry takes the failed one now, and the freed one.
        store.reset_mts_failures(c).await.unwrap();
        let claim = store
            .claim_mts_chunk(run2.id, 0, &selection(c, &all), 10)
            .await
            .unwrap();
        let mut got: Vec<i64> = claim.records.iter().map(|r| r.registrant.id).collect();
        got.sort_unstable();
        assert_eq!(got, vec![b, d]);
        // b is sent again under a fresh reference; the first send's result, arriving late, is
        // recognised as stale (ignored), not refused as unknown.
        let rb2 = claim.records.iter().find(|r| r.registrant.id == b).unwrap();
        assert_ne!(rb2.reference, rb.reference);
        let report = store
            .apply_mts_callbacks(&policy(c), &[failed(&rb.reference)], &Actor::system("mts"))
            .await
            .unwrap();
        assert_eq!((report.applied, report.ignored), (0, 1));
        assert_eq!(store.mts_run_progress(run2.id).await.unwrap().pending, 2);
    }
}

#[tokio::test]
async fn manual_ids_and_duplicates() {
    for store in g2p_testkit::backends().await {
        let a = person(&store, 1, Some("1111")).await;
        let b = person(&store, 2, Some("2222")).await;
        let c = connector(&store).await;
        let all = Domain::parse_str("[]").unwrap();
        let run = store
            .create_mts_run(c, RunKind::Manual, None, Some(&[b, b, 999_999]), "test")
            .await
            .unwrap();
        let sel = MtsSelection {
            targets_of_run: Some(run.id),
            ..selection(c, &all)
        };
        let claim = store.claim_mts_chunk(run.id, 0, &sel, 10).await.unwrap();
        assert_eq!(claim.records.len(), 1, "only the listed registrant");
        assert_eq!(claim.records[0].registrant.id, b);
        let rb = claim.records[0].reference.clone();
        assert!(
            store
                .create_mts_run(c, RunKind::Manual, None, Some(&[a]), "test")
                .await
                .is_err(),
            "one active run per connector"
        );
        // Both end up with the same token: flagged as possible duplicates.
        let everyone = store
            .claim_mts_chunk(run.id, 0, &selection(c, &all), 10)
            .await
            .unwrap();
        assert_eq!(everyone.records.len(), 1, "b is in flight");
        let ra = everyone.records[0].reference.clone();
        store
            .apply_mts_callbacks(
                &policy(c),
                &[ok(&ra, "SAME"), ok(&rb, "SAME")],
                &Actor::system("mts"),
            )
            .await
            .unwrap();
        let dups = store.mts_possible_duplicates(TOKEN, 10).await.unwrap();
        assert_eq!(dups.len(), 1);
        assert_eq!(dups[0].registrant_ids, vec![a, b]);
    }
}

#[tokio::test]
async fn racing_claims_never_send_a_registrant_twice() {
    for store in g2p_testkit::backends().await {
        for i in 0..200 {
            person(&store, i, Some(&format!("9{i:05}"))).await;
        }
        let c = connector(&store).await;
        let all = Domain::parse_str("[]").unwrap();
        let run = store
            .create_mts_run(c, RunKind::Delta, None, None, "test")
            .await
            .unwrap();
        let claims = futures::future::join_all((0..4).map(|_| {
            let store = store.clone();
            let all = all.clone();
            async move {
                store
                    .claim_mts_chunk(run.id, 0, &selection(c, &all), 150)
                    .await
                    .unwrap()
            }
        }))
        .await;
        let mut ids: Vec<i64> = claims
            .iter()
            .flat_map(|c| c.records.iter().map(|r| r.registrant.id))
            .collect();
        // Whatever the racers left is taken afterwards.
        loop {
            let rest = store
                .claim_mts_chunk(run.id, 0, &selection(c, &all), 150)
                .await
                .unwrap();
            if rest.records.is_empty() {
                break;
            }
            ids.extend(rest.records.iter().map(|r| r.registrant.id));
        }
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "a registrant was claimed twice");
        assert_eq!(n, 200, "every registrant claimed once");
    }
}

/// The same bulk callback delivered by several senders at once (MTS retrying while the first
/// delivery is still being applied), with a reference repeated inside it: every record is
/// applied exactly once, with one token and one audit entry.
#[tokio::test]
async fn concurrent_deliveries_apply_each_record_once() {
    for store in g2p_testkit::backends().await {
        let mut people = vec![];
        for i in 0..60 {
            people.push(person(&store, i, Some(&format!("7{i:05}"))).await);
        }
        let c = connector(&store).await;
        let all = Domain::parse_str("[]").unwrap();
        let run = store
            .create_mts_run(c, RunKind::Delta, None, None, "test")
            .await
            .unwrap();
        let claim = store
            .claim_mts_chunk(run.id, 0, &selection(c, &all), 100)
            .await
            .unwrap();
        assert_eq!(claim.records.len(), 60);
        let mut items: Vec<MtsCallbackItem> = claim
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if i % 4 == 0 {
                    failed(&r.reference)
                } else {
                    ok(&r.reference, &format!("TOK-{}", r.registrant.id))
                }
            })
            .collect();
        items.push(items[1].clone());
        let reports = futures::future::join_all((0..6).map(|_| {
            let store = store.clone();
            let items = items.clone();
            async move {
                store
                    .apply_mts_callbacks(&policy(c), &items, &Actor::system("mts"))
                    .await
                    .unwrap()
            }
        }))
        .await;
        let applied: usize = reports.iter().map(|r| r.applied).sum();
        assert_eq!(applied, 60, "{reports:?}");
        assert!(reports.iter().all(|r| r.applied + r.ignored == items.len()));

        for (i, r) in claim.records.iter().enumerate() {
            let id = r.registrant.id;
            let ids = ids_of(&store, id).await;
            let audits = store.audit_for_registrant(id, None, 50).await.unwrap();
            let tokenised: Vec<_> = audits
                .iter()
                .filter(|a| a.action == "mts.tokenised")
                .collect();
            if i % 4 == 0 {
                assert_eq!(ids, vec![(VID.into(), r.vid.clone())]);
                assert!(tokenised.is_empty());
            } else {
                assert_eq!(ids, vec![(TOKEN.into(), format!("TOK-{id}"))]);
                assert_eq!(tokenised.len(), 1, "one audit entry for {id}");
                let after = tokenised[0].after.as_ref().unwrap();
                assert_eq!(after["vid_removed"], json!(true));
                assert_eq!(after["run_id"], json!(run.id));
                assert_eq!(after["attributes"], json!(["kyc_verified"]));
                let reg = store.get_registrant(id).await.unwrap();
                assert_eq!(reg.attributes["kyc_verified"], json!(true));
            }
        }
        let progress = store.mts_run_progress(run.id).await.unwrap();
        assert_eq!(
            (progress.pending, progress.processed, progress.failed),
            (0, 45, 15)
        );
    }
}
