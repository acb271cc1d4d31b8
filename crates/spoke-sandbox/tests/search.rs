//! Search over HTTP: filters, sorts, paging, limits and the index lag.

mod common;

use std::time::Duration;

use common::Harness;
use reqwest::Method;
use serde_json::{Value, json};

async fn search(h: &Harness, object: &str, body: Value) -> (u16, Value) {
    h.json(
        Method::POST,
        &format!("/crm/v3/objects/{object}/search"),
        Some(body),
    )
    .await
}

fn ids(b: &Value) -> Vec<String> {
    b["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn filters_sorts_and_paging() {
    let h = Harness::start().await;
    let inputs: Vec<Value> = (0..30)
        .map(|i| {
            let mut p = json!({"name": format!("Company {i}"), "domain": format!("c{i}.example"), "numberofemployees": (i * 10).to_string()});
            if i % 3 == 0 {
                p["industry"] = json!("COMPUTER_SOFTWARE");
            }
            json!({"properties": p})
        })
        .collect();
    let (s, created) = h
        .json(
            Method::POST,
            "/crm/v3/objects/companies/batch/create",
            Some(json!({"inputs": inputs})),
        )
        .await;
    assert_eq!(s, 201);
    let all: Vec<String> = ids(&created);

    let f = |prop: &str, op: &str, v: Value| json!({"filterGroups": [{"filters": [{"propertyName": prop, "operator": op, "value": v}]}], "limit": 100});
    let cases: Vec<(Value, usize)> = vec![
        (f("domain", "EQ", json!("C5.example")), 1),
        (f("domain", "NEQ", json!("c5.example")), 29),
        (f("numberofemployees", "GT", json!("250")), 4),
        (f("numberofemployees", "GTE", json!(250)), 5),
        (f("numberofemployees", "LT", json!("20")), 2),
        (f("numberofemployees", "LTE", json!("20")), 3),
        (f("industry", "HAS_PROPERTY", Value::Null), 10),
        (f("industry", "NOT_HAS_PROPERTY", Value::Null), 20),
        (f("name", "CONTAINS_TOKEN", json!("company")), 30),
        (f("name", "CONTAINS_TOKEN", json!("1*")), 11),
        (f("name", "NOT_CONTAINS_TOKEN", json!("7")), 29),
        (
            json!({"filterGroups": [{"filters": [{"propertyName": "numberofemployees", "operator": "BETWEEN", "value": "100", "highValue": "150"}]}]}),
            6,
        ),
        (
            json!({"filterGroups": [{"filters": [{"propertyName": "domain", "operator": "IN", "values": ["c1.example", "c2.example", "nope"]}]}]}),
            2,
        ),
        (
            json!({"filterGroups": [{"filters": [{"propertyName": "industry", "operator": "NOT_IN", "values": ["COMPUTER_SOFTWARE"]}]}], "limit": 100}),
            20,
        ),
        // Groups are OR-ed, filters inside a group AND-ed.
        (
            json!({"filterGroups": [
            {"filters": [{"propertyName": "industry", "operator": "EQ", "value": "COMPUTER_SOFTWARE"}, {"propertyName": "numberofemployees", "operator": "LT", "value": "100"}]},
            {"filters": [{"propertyName": "domain", "operator": "EQ", "value": "c29.example"}]}]}),
            5,
        ),
        (json!({"query": "company 2"}), 11),
        (
            json!({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": all[4]}]}]}),
            1,
        ),
    ];
    for (body, want) in cases {
        let (s, b) = search(&h, "companies", body.clone()).await;
        assert_eq!(s, 200, "{body}: {b}");
        assert_eq!(b["total"], json!(want), "{body}");
    }

    let (_, b) = search(&h, "companies", json!({"sorts": [{"propertyName": "numberofemployees", "direction": "DESCENDING"}], "limit": 3, "properties": ["numberofemployees"]})).await;
    let top: Vec<&str> = b["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["properties"]["numberofemployees"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(top, ["290", "280", "270"]);
    let (_, b) = search(
        &h,
        "companies",
        json!({"sorts": ["numberofemployees"], "limit": 1, "properties": ["numberofemployees"]}),
    )
    .await;
    assert_eq!(b["results"][0]["properties"]["numberofemployees"], "0");

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut body = json!({"limit": 7, "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]});
        if let Some(a) = &after {
            body["after"] = json!(a);
        }
        let (_, b) = search(&h, "companies", body).await;
        assert_eq!(b["total"], 30);
        seen.extend(ids(&b));
        match b["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn search_limits_like_hubspot() {
    let h = Harness::start().await;
    let filter = json!({"propertyName": "name", "operator": "HAS_PROPERTY"});
    let group = json!({"filters": [filter.clone()]});
    let cases = vec![
        json!({"limit": 201}),
        json!({"filterGroups": vec![group.clone(); 6]}),
        json!({"filterGroups": [{"filters": vec![filter.clone(); 7]}]}),
        json!({"filterGroups": [{"filters": vec![filter.clone(); 6]}, {"filters": vec![filter.clone(); 6]}, {"filters": vec![filter.clone(); 6]}, {"filters": vec![filter.clone(); 1]}]}),
        json!({"after": "10000"}),
        json!({"filterGroups": [{"filters": [{"propertyName": "name", "operator": "LIKE", "value": "x"}]}]}),
    ];
    for body in cases {
        let (s, e) = search(&h, "companies", body.clone()).await;
        assert_eq!(
            (s, e["category"].clone()),
            (400, json!("VALIDATION_ERROR")),
            "{body}"
        );
    }
    let (s, b) = search(&h, "companies", json!({"limit": 200})).await;
    assert_eq!((s, b["total"].clone()), (200, json!(0)));
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn search_lags_behind_writes_but_reads_do_not() {
    let h = Harness::start().await;
    h.sandbox
        .control()
        .set_search_lag(Duration::from_millis(400));
    let ids = h.create_contacts(1, "lag").await;
    let by_email = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "lag0@example.com"}]}], "properties": ["firstname"]});
    let (_, b) = search(&h, "contacts", by_email.clone()).await;
    assert_eq!(b["total"], 0, "new record must not be searchable yet");
    let (s, _) = h
        .json(
            Method::GET,
            &format!("/crm/v3/objects/contacts/{}", ids[0]),
            None,
        )
        .await;
    assert_eq!(s, 200, "reads see the record at once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, b) = search(&h, "contacts", by_email.clone()).await;
    assert_eq!(b["total"], 1);

    let (s, _) = h
        .json(
            Method::PATCH,
            &format!("/crm/v3/objects/contacts/{}", ids[0]),
            Some(json!({"properties": {"firstname": "Changed"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, b) = search(&h, "contacts", by_email.clone()).await;
    assert_eq!(
        b["results"][0]["properties"]["firstname"], "F0",
        "search still sees the old version"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, b) = search(&h, "contacts", by_email).await;
    assert_eq!(b["results"][0]["properties"]["firstname"], "Changed");
    h.sandbox.shutdown().await;
}
