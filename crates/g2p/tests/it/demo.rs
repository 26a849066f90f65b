//! The demo data: households with members, IDs (some MOSIP VIDs), usable through the API.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn demo_data_has_households_members_and_vids() {
    for app in TestApp::all().await {
        let n = g2p::demo::populate(&app.app.store, 60).await.unwrap();
        assert_eq!(n, 60);
        let (s, page) = app
            .post(
                "/api/v1/registrants/search",
                &app.viewer,
                json!({"filter": [["is_group", "=", true]], "limit": 500}),
            )
            .await;
        assert_eq!(s, 200);
        let groups = page["items"].as_array().unwrap();
        assert!(!groups.is_empty());
        let gid = groups[0]["id"].as_i64().unwrap();
        let (s, members) = app
            .get(&format!("/api/v1/registrants/{gid}/members"), &app.viewer)
            .await;
        assert_eq!(s, 200);
        let members = members.as_array().unwrap();
        assert!(!members.is_empty());
        assert_eq!(members[0]["kinds"], json!(["head"]));

        let (_, vids) = app
            .post(
                "/api/v1/registrants/search",
                &app.viewer,
                json!({"filter": [["reg_ids.id_type", "=like", "MOSIP VID"]], "limit": 500}),
            )
            .await;
        let vids = vids["items"].as_array().unwrap();
        assert!(
            !vids.is_empty() && vids.len() < 60,
            "{} VID holders",
            vids.len()
        );
        let (_, individuals) = app
            .post(
                "/api/v1/registrants/search",
                &app.viewer,
                json!({"filter": [["is_group", "=", false]], "limit": 500}),
            )
            .await;
        assert_eq!(individuals["items"].as_array().unwrap().len(), 60);
        app.stop().await;
    }
}

/// `g2p demo --once --json` as a real process: a fresh registry in a temporary directory,
/// tokenised through the Registry MTS Connector against the in-process `g2p mts`, and the ODK
/// simulator's submissions imported through the ODK MTS Connector; stdout is exactly one JSON
/// object whose counts add up.
#[test]
fn demo_once_json_tokenises_through_mts() {
    let dir = std::env::temp_dir().join(format!("g2p-demo-once-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("demo.sqlite");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_g2p"))
        .args(["demo", "--once", "--json", "--individuals", "60"])
        .args(["--timeout", "90", "--file"])
        .arg(&db)
        // The database and its key file go to the temporary directory, and no g2p.toml of
        // the working directory is read.
        .current_dir(&dir)
        .env("G2P_DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .expect("run g2p demo --once --json");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    let n = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert_eq!(n("registrants"), 60, "{v}");
    assert!(n("with_vid") > 0, "{v}");
    assert_eq!(n("sent"), n("with_vid"), "every VID holder is sent: {v}");
    let failed = v["failed"].as_object().expect("failed by code");
    let failed_total: i64 = failed.values().map(|x| x.as_i64().unwrap()).sum();
    assert_eq!(n("tokenised") + failed_total, n("sent"), "{v}");
    assert!(
        failed.get("IDA-DEA-001").and_then(|x| x.as_i64()) > Some(0),
        "the 9999… VIDs fail: {v}"
    );
    assert!(n("tokenised") > 0, "{v}");
    assert_eq!(n("vids_removed"), n("tokenised"), "{v}");
    assert_eq!(v["run_status"], "completed", "{v}");
    assert!(v["seconds"].as_f64().is_some(), "{v}");
    // The ODK import: every submission came back; the person submitted twice is flagged, the
    // refused one is created with its VID kept.
    let odk = &v["odk"];
    let o = |k: &str| {
        odk[k]
            .as_i64()
            .unwrap_or_else(|| panic!("odk.{k} missing: {v}"))
    };
    assert_eq!(odk["run_status"], "completed", "{v}");
    assert!(o("submissions") > 2, "{v}");
    assert_eq!(o("received"), o("submissions"), "{v}");
    assert_eq!(o("tokenised") + o("failed"), o("received"), "{v}");
    assert_eq!(o("failed"), 1, "{v}");
    assert_eq!(o("possible_duplicates"), 1, "{v}");
    assert_eq!(o("created"), o("submissions") - 1, "{v}");
    assert!(db.exists(), "the database is the one given");
    let _ = std::fs::remove_dir_all(&dir);
}
