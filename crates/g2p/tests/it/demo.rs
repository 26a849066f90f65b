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
