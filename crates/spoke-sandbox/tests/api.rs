//! CRM, account, owner, property and pipeline routes over real HTTP, including HubSpot's error paths.

mod common;

use std::collections::HashSet;

use common::{Harness, PORTAL};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn account_users_owners_properties_pipelines() {
    let h = Harness::start().await;
    let (s, b) = h.json(Method::GET, "/account-info/v3/details", None).await;
    assert_eq!(s, 200);
    assert_eq!(b["portalId"], json!(PORTAL));
    assert_eq!(b["accountType"], "STANDARD");
    assert_eq!(b["uiDomain"], "app.hubspot.com");
    assert_eq!(b["companyCurrency"], "USD");
    assert!(
        b["utcOffset"].as_str().is_some_and(|o| o.starts_with('-')),
        "{b}"
    );

    let (s, b) = h
        .json(Method::GET, "/settings/v3/users?limit=2", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(b["results"][0]["superAdmin"], true);
    let after = b["paging"]["next"]["after"]
        .as_str()
        .expect("paging")
        .to_owned();
    let (_, b2) = h
        .json(
            Method::GET,
            &format!("/settings/v3/users?limit=2&after={after}"),
            None,
        )
        .await;
    assert_eq!(b2["results"].as_array().map(Vec::len), Some(1));
    assert!(b2.get("paging").is_none());
    let (s, u) = h.json(Method::GET, "/settings/v3/users/202", None).await;
    assert_eq!((s, u["superAdmin"].clone()), (200, json!(false)));

    let (s, b) = h
        .json(Method::GET, "/crm/v3/owners?email=OWNER2@example.com", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["results"][0]["id"], "102");
    assert_eq!(b["results"][0]["userId"], 202);
    let (s, _) = h.json(Method::GET, "/crm/v3/owners/999", None).await;
    assert_eq!(s, 404);
    let (_, page1) = h.json(Method::GET, "/crm/v3/owners?limit=2", None).await;
    let after = page1["paging"]["next"]["after"]
        .as_str()
        .expect("paging")
        .to_owned();
    let (_, page2) = h
        .json(
            Method::GET,
            &format!("/crm/v3/owners?limit=2&after={after}"),
            None,
        )
        .await;
    assert_eq!(page2["results"][0]["id"], "103");

    let (s, b) = h
        .json(Method::GET, "/crm/v3/properties/companies", None)
        .await;
    assert_eq!(s, 200);
    let industry = b["results"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "industry")
        .expect("industry")
        .clone();
    assert_eq!(industry["type"], "enumeration");
    assert!(
        industry["options"]
            .as_array()
            .expect("options")
            .iter()
            .any(|o| o["value"] == "COMPUTER_SOFTWARE")
    );
    let (s, p) = h
        .json(Method::GET, "/crm/v3/properties/0-1/hs_object_id", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(p["modificationMetadata"]["readOnlyValue"], true);
    assert_eq!(p["calculated"], true);
    let (_, owner_prop) = h
        .json(
            Method::GET,
            "/crm/v3/properties/contacts/hubspot_owner_id",
            None,
        )
        .await;
    assert_eq!(owner_prop["options"].as_array().map(Vec::len), Some(3));
    let (s, _) = h
        .json(Method::GET, "/crm/v3/properties/contacts/nope", None)
        .await;
    assert_eq!(s, 404);

    let (s, b) = h.json(Method::GET, "/crm/v3/pipelines/deals", None).await;
    assert_eq!(s, 200);
    assert_eq!(b["results"][0]["id"], "default");
    assert!(
        b["results"][0]["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .any(|s| s["id"] == "closedwon" && s["metadata"]["isClosed"] == "true")
    );
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn single_record_lifecycle_and_id_property() {
    let h = Harness::start().await;
    let (s, c) = h
        .json(Method::POST, "/crm/v3/objects/contacts", Some(json!({"properties": {"email": "Ann@Example.com", "firstname": "Ann", "hubspot_owner_id": "101"}})))
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    assert_eq!(c["properties"]["hs_object_id"], id.as_str());
    assert!(
        c["properties"]["createdate"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z'))
    );
    assert_eq!(c["archived"], false);

    let (s, g) = h
        .json(Method::GET, &format!("/crm/v3/objects/contacts/{id}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(g["properties"]["email"], "Ann@Example.com");
    assert!(g["properties"].get("lastmodifieddate").is_some());
    let (s, g) = h.json(Method::GET, "/crm/v3/objects/contacts/ann@example.com?idProperty=email&properties=firstname,hubspot_owner_id", None).await;
    assert_eq!(s, 200);
    assert_eq!(g["id"], id.as_str());
    assert_eq!(g["properties"]["hubspot_owner_id"], "101");
    assert!(g["properties"].get("email").is_none());

    let (s, u) = h
        .json(
            Method::PATCH,
            &format!("/crm/v3/objects/contacts/{id}"),
            Some(json!({"properties": {"lastname": "Lee"}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["properties"]["lastname"], "Lee");
    assert_eq!(u["properties"]["firstname"], "Ann");

    let (s, _) = h
        .json(
            Method::DELETE,
            &format!("/crm/v3/objects/contacts/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, e) = h
        .json(Method::GET, &format!("/crm/v3/objects/contacts/{id}"), None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(e["category"], "OBJECT_NOT_FOUND");
    let (s, a) = h
        .json(
            Method::GET,
            &format!("/crm/v3/objects/contacts/{id}?archived=true"),
            None,
        )
        .await;
    assert_eq!((s, a["archived"].clone()), (200, json!(true)));
    // The email is free again once archived.
    let (s, _) = h
        .json(
            Method::POST,
            "/crm/v3/objects/contacts",
            Some(json!({"properties": {"email": "ann@example.com"}})),
        )
        .await;
    assert_eq!(s, 201);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn list_pages_to_the_end() {
    let h = Harness::start().await;
    let created: HashSet<String> = h.create_contacts(250, "page").await.into_iter().collect();
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/crm/v3/objects/contacts?limit=100&after={a}"),
            None => "/crm/v3/objects/contacts?limit=100".into(),
        };
        let (s, b) = h.json(Method::GET, &path, None).await;
        assert_eq!(s, 200);
        pages += 1;
        for r in b["results"].as_array().expect("results") {
            assert!(
                seen.insert(r["id"].as_str().expect("id").to_owned()),
                "duplicate across pages"
            );
        }
        match b["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    // limit above 100 is capped at 100.
    let (_, b) = h
        .json(Method::GET, "/crm/v3/objects/contacts?limit=500", None)
        .await;
    assert_eq!(b["results"].as_array().map(Vec::len), Some(100));
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn batch_limits_conflicts_and_validation() {
    let h = Harness::start().await;
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"properties": {"firstname": format!("x{i}")}}))
        .collect();
    let (s, e) = h
        .json(
            Method::POST,
            "/crm/v3/objects/contacts/batch/create",
            Some(json!({"inputs": too_many})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(e["category"], "VALIDATION_ERROR");
    assert!(e["correlationId"].as_str().is_some());

    let ids = h.create_contacts(1, "dup").await;
    let (s, e) = h
        .json(
            Method::POST,
            "/crm/v3/objects/contacts/batch/create",
            Some(json!({"inputs": [{"properties": {"email": "new@example.com"}}, {"properties": {"email": "DUP0@example.com"}}]})),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(e["category"], "CONFLICT");
    assert_eq!(
        e["message"],
        format!("Contact already exists. Existing ID: {}", ids[0])
    );
    // The whole batch failed: the other contact was not created.
    let (s, _) = h
        .json(
            Method::GET,
            "/crm/v3/objects/contacts/new@example.com?idProperty=email",
            None,
        )
        .await;
    assert_eq!(s, 404);

    let (s, e) = h
        .json(Method::POST, "/crm/v3/objects/companies/batch/create", Some(json!({"inputs": [{"properties": {"name": "A", "industry": "COMPUTER_SOFTWARE"}}, {"properties": {"name": "B", "industry": "Computer Software"}}]})))
        .await;
    assert_eq!(s, 400);
    assert_eq!(e["category"], "VALIDATION_ERROR");
    assert_eq!(e["errors"][0]["code"], "INVALID_OPTION");
    assert_eq!(e["errors"][0]["context"]["propertyName"][0], "industry");
    let msg = e["message"].as_str().expect("message");
    assert!(msg.starts_with("Property values were not valid: "), "{msg}");
    assert!(
        msg.contains("Computer Software was not one of the allowed options: [ACCOUNTING,"),
        "{msg}"
    );

    let (s, e) = h
        .json(
            Method::POST,
            "/crm/v3/objects/companies",
            Some(json!({"properties": {"hs_object_id": "5"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(e["errors"][0]["code"], "READ_ONLY_VALUE");
    let (s, e) = h
        .json(
            Method::POST,
            "/crm/v3/objects/companies",
            Some(json!({"properties": {"not_a_property": "5"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(e["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("PROPERTY_DOESNT_EXIST"))
    );
    let (s, e) = h
        .json(
            Method::POST,
            "/crm/v3/objects/companies",
            Some(json!({"properties": "nope"})),
        )
        .await;
    assert_eq!((s, e["category"].clone()), (400, json!("VALIDATION_ERROR")));

    let counts = h.sandbox.control().counts(PORTAL).expect("counts");
    assert_eq!(counts.live["companies"], 0);
    assert_eq!(counts.live["contacts"], 1);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn batch_read_update_archive_with_multi_status() {
    let h = Harness::start().await;
    let ids = h.create_contacts(3, "multi").await;
    let (s, b) = h
        .json(Method::POST, "/crm/v3/objects/contacts/batch/read", Some(json!({"inputs": [{"id": ids[0]}, {"id": "999999"}, {"id": ids[1]}], "properties": ["email"]})))
        .await;
    assert_eq!(s, 207, "{b}");
    assert_eq!(b["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(b["numErrors"], 1);
    assert_eq!(b["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(b["errors"][0]["context"]["ids"][0], "999999");

    let (s, b) = h
        .json(Method::POST, "/crm/v3/objects/contacts/batch/read", Some(json!({"idProperty": "email", "inputs": [{"id": "MULTI2@example.com"}], "properties": ["firstname"]})))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["status"], "COMPLETE");
    assert_eq!(b["results"][0]["id"], ids[2].as_str());
    assert!(b["startedAt"].is_string() && b["completedAt"].is_string());

    let (s, b) = h
        .json(Method::POST, "/crm/v3/objects/contacts/batch/update", Some(json!({"inputs": [{"id": ids[0], "properties": {"lastname": "Updated"}}, {"id": "424242", "properties": {"lastname": "X"}}]})))
        .await;
    assert_eq!(s, 207, "{b}");
    assert_eq!(b["results"][0]["properties"]["lastname"], "Updated");
    assert_eq!(b["errors"][0]["context"]["ids"][0], "424242");

    let (s, e) = h
        .json(
            Method::POST,
            "/crm/v3/objects/contacts/batch/update",
            Some(
                json!({"inputs": [{"id": ids[0], "properties": {"email": "multi1@example.com"}}]}),
            ),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        e["message"],
        format!("Contact already exists. Existing ID: {}", ids[1])
    );

    let (s, b) = h
        .json(Method::POST, "/crm/v3/objects/contacts/batch/upsert", Some(json!({"inputs": [{"id": "multi0@example.com", "idProperty": "email", "properties": {"firstname": "Up"}}, {"id": "fresh@example.com", "idProperty": "email", "properties": {"firstname": "New"}}]})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["results"][0]["new"], false);
    assert_eq!(b["results"][1]["new"], true);
    assert_eq!(b["results"][1]["properties"]["email"], "fresh@example.com");

    let (s, _) = h
        .json(
            Method::POST,
            "/crm/v3/objects/contacts/batch/archive",
            Some(json!({"inputs": [{"id": ids[0]}, {"id": ids[1]}, {"id": "123"}]})),
        )
        .await;
    assert_eq!(s, 204);
    let counts = h.sandbox.control().counts(PORTAL).expect("counts");
    assert_eq!(
        (counts.live["contacts"], counts.archived["contacts"]),
        (2, 2)
    );
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn associations_inline_v4_and_engagements() {
    let h = Harness::start().await;
    let (_, company) = h
        .json(
            Method::POST,
            "/crm/v3/objects/companies",
            Some(json!({"properties": {"name": "Acme", "domain": "acme.io"}})),
        )
        .await;
    let cid = company["id"].as_str().expect("id").to_owned();
    let (s, contact) = h
        .json(
            Method::POST,
            "/crm/v3/objects/contacts",
            Some(json!({"properties": {"email": "a@acme.io"}, "associations": [{"to": {"id": cid}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]}]})),
        )
        .await;
    assert_eq!(s, 201, "{contact}");
    let pid = contact["id"].as_str().expect("id").to_owned();
    let (_, g) = h
        .json(
            Method::GET,
            &format!("/crm/v3/objects/companies/{cid}?associations=contacts"),
            None,
        )
        .await;
    assert_eq!(
        g["associations"]["contacts"]["results"][0]["id"],
        pid.as_str()
    );

    let (s, task) = h
        .json(
            Method::POST,
            "/crm/v3/objects/tasks",
            Some(json!({"properties": {"hs_timestamp": "2024-05-01T10:00:00.000Z", "hs_task_subject": "Call back", "hs_task_status": "NOT_STARTED"},
                         "associations": [{"to": {"id": pid}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]})),
        )
        .await;
    assert_eq!(s, 201, "{task}");
    let tid = task["id"].as_str().expect("id").to_owned();
    let (s, r) = h
        .json(
            Method::PUT,
            &format!("/crm/v4/objects/tasks/{tid}/associations/default/companies/{cid}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["results"][0]["associationSpec"]["associationTypeId"], 192);
    let (_, l) = h
        .json(
            Method::GET,
            &format!("/crm/v4/objects/companies/{cid}/associations/tasks"),
            None,
        )
        .await;
    assert_eq!(
        l["results"][0]["toObjectId"],
        json!(tid.parse::<u64>().expect("numeric"))
    );
    assert_eq!(l["results"][0]["associationTypes"][0]["typeId"], 191);

    let (_, call) = h
        .json(
            Method::POST,
            "/crm/v3/objects/0-48",
            Some(
                json!({"properties": {"hs_timestamp": "1714557600000", "hs_call_title": "Intro"}}),
            ),
        )
        .await;
    let call_id = call["id"].as_str().expect("id").to_owned();
    let (s, b) = h
        .json(Method::POST, "/crm/v4/associations/calls/contacts/batch/associate/default", Some(json!({"inputs": [{"from": {"id": call_id}, "to": {"id": pid}}, {"from": {"id": call_id}, "to": {"id": "1"}}]})))
        .await;
    assert_eq!(s, 207, "{b}");
    assert_eq!(b["results"][0]["associationSpec"]["associationTypeId"], 194);
    assert_eq!(b["numErrors"], 1);
    let (s, b) = h
        .json(Method::POST, "/crm/v4/associations/meetings/contacts/batch/create", Some(json!({"inputs": [{"from": {"id": "1"}, "to": {"id": pid}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}]}]})))
        .await;
    assert_eq!((s, b["numErrors"].clone()), (207, json!(1)));
    let (s, _) = h
        .json(Method::POST, "/crm/v3/objects/contacts", Some(json!({"properties": {"email": "b@acme.io"}, "associations": [{"to": {"id": "98765"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]}]})))
        .await;
    assert_eq!(s, 400);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn associations_batch_read_is_hubspot_shaped_and_paged() {
    let h = Harness::start().await;
    let control = h.sandbox.control();
    let rows = |n: usize, key: &str| -> Vec<serde_json::Map<String, Value>> {
        (0..n)
            .map(|i| {
                json!({ key: format!("{key}-{i}") })
                    .as_object()
                    .cloned()
                    .expect("object")
            })
            .collect()
    };
    let companies = control
        .insert_records(PORTAL, "companies", rows(502, "name"))
        .expect("companies");
    let deals = control
        .insert_records(PORTAL, "deals", rows(2, "dealname"))
        .expect("deals");
    control
        .associate_records(
            PORTAL,
            "deals",
            "companies",
            &[(deals[0].clone(), companies[0].clone())],
            Some(5),
        )
        .expect("primary");
    let rest: Vec<(String, String)> = companies[1..]
        .iter()
        .map(|c| (deals[0].clone(), c.clone()))
        .collect();
    control
        .associate_records(PORTAL, "deals", "companies", &rest, None)
        .expect("unlabeled");

    let path = "/crm/v4/associations/deals/companies/batch/read";
    let (s, b) = h
        .json(
            Method::POST,
            path,
            Some(json!({"inputs": [{"id": deals[0]}, {"id": deals[1]}]})),
        )
        .await;
    assert_eq!(s, 207, "{b}");
    assert_eq!(b["status"], "COMPLETE");
    assert_eq!(b["results"].as_array().map(Vec::len), Some(1));
    let first = &b["results"][0];
    assert_eq!(first["from"]["id"], deals[0].as_str());
    assert_eq!(first["to"].as_array().map(Vec::len), Some(500));
    assert_eq!(
        first["to"][0]["toObjectId"],
        json!(companies[0].parse::<u64>().expect("id"))
    );
    assert_eq!(
        first["to"][0]["associationTypes"][0],
        json!({"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"})
    );
    assert_eq!(
        first["to"][1]["associationTypes"][0],
        json!({"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null})
    );
    assert_eq!(b["numErrors"], 1);
    assert_eq!(
        b["errors"][0]["subCategory"],
        "crm.associations.NO_ASSOCIATIONS_FOUND"
    );
    assert_eq!(
        b["errors"][0]["context"]["fromObjectId"][0],
        deals[1].as_str()
    );
    let after = first["paging"]["next"]["after"]
        .as_str()
        .expect("a second page")
        .to_owned();

    let (s, b) = h
        .json(
            Method::POST,
            path,
            Some(json!({"inputs": [{"id": deals[0], "after": after}]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let rest = b["results"][0]["to"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rest.len(), 2, "502 companies = 500 + 2");
    assert!(
        b["results"][0].get("paging").is_none(),
        "last page has no paging"
    );

    let (s, b) = h
        .json(Method::POST, path, Some(json!({"inputs": (0..1001).map(|i| json!({"id": i.to_string()})).collect::<Vec<_>>()})))
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"].as_str().unwrap_or_default().contains("1000"),
        "{b}"
    );
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn unknown_object_type_and_route() {
    let h = Harness::start().await;
    let (s, e) = h.json(Method::GET, "/crm/v3/objects/widgets", None).await;
    assert_eq!((s, e["category"].clone()), (400, json!("VALIDATION_ERROR")));
    let (s, _) = h.json(Method::GET, "/crm/v9/nothing", None).await;
    assert_eq!(s, 404);
    h.sandbox.shutdown().await;
}
