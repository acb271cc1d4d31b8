//! Bad input at the export API (issue 12, item 5), through gRPC against the real service.
//!
//! The export service's per-record rule, checked here:
//! - **Request shape** (record count, record ids, a record's kind, profile present, field count
//!   and value size) is validated for the whole request before anything is stored: one bad record
//!   among good ones refuses the request with INVALID_ARGUMENT naming the record (index and id)
//!   and the field, and no job is created (the caller fixes or drops that record and retries).
//! - **Values** (an email that is not one, a record without any mapped value, ...) are judged per
//!   record while the job runs: that record ends FAILED with a message naming the field, and every
//!   other record is written.

mod common;

use common::*;
use spoke_mapping_core::{DuplicateSettings, ExportPreferences};
use spoke_proto::common::v1::{ExportRecord, ObjectType, Profile};
use spoke_proto::export::v1::{
    CreateExportRequest, ListExportRecordsRequest, ListExportsRequest, RecordStatus,
};
use tonic::Code;

fn create(key: &str, object: ObjectType, records: Vec<ExportRecord>) -> CreateExportRequest {
    CreateExportRequest {
        idempotency_key: key.into(),
        object: object as i32,
        records,
        label: "bad input".into(),
        ..Default::default()
    }
}

fn good(i: usize) -> ExportRecord {
    contact(
        &format!("r{i}"),
        &[
            ("email", &format!("person{i}@bad-input.example")),
            ("first_name", "Pat"),
        ],
    )
}

async fn job_count(h: &Harness) -> usize {
    h.client()
        .await
        .list_exports(authed(ListExportsRequest::default(), MAPPED_USER))
        .await
        .expect("list")
        .into_inner()
        .jobs
        .len()
}

/// Asserts INVALID_ARGUMENT whose message holds every `parts`, and that no job was created.
async fn refused(h: &Harness, req: CreateExportRequest, parts: &[&str]) {
    let before = job_count(h).await;
    let err = h
        .client()
        .await
        .create_export(authed(req, MAPPED_USER))
        .await
        .expect_err("request must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    for p in parts {
        assert!(
            err.message().contains(p),
            "{:?} should name {p:?}",
            err.message()
        );
    }
    assert_eq!(
        job_count(h).await,
        before,
        "a refused request creates no job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_export_refuses_bad_records_naming_record_and_field() {
    let h = Harness::start().await;

    // More than 100,000 records (the hard limit), whatever the admin allows.
    let many: Vec<ExportRecord> = (0..100_001)
        .map(|i| ExportRecord {
            record_id: format!("{i}"),
            profile: Some(Profile {
                profile_id: format!("{i}"),
                kind: ObjectType::Contacts as i32,
                ..Default::default()
            }),
        })
        .collect();
    refused(
        &h,
        create("too-many", ObjectType::Contacts, many),
        &["records", "100001", "100000"],
    )
    .await;

    // More than the admin's max per export.
    h.cluster.set_mapping(
        ObjectType::Contacts,
        compiled(
            ObjectType::Contacts,
            ExportPreferences {
                max_per_export: 3,
                ..ExportPreferences::default()
            },
            DuplicateSettings::default(),
        ),
    );
    refused(
        &h,
        create(
            "over-admin-max",
            ObjectType::Contacts,
            (0..4).map(good).collect(),
        ),
        &["records", "at most 3"],
    )
    .await;
    h.cluster.set_mapping(
        ObjectType::Contacts,
        compiled(
            ObjectType::Contacts,
            ExportPreferences::default(),
            DuplicateSettings::default(),
        ),
    );

    // No records at all.
    refused(
        &h,
        create("empty", ObjectType::Contacts, vec![]),
        &["records"],
    )
    .await;

    // One bad record among good ones: the request names it and nothing is stored.
    let with = |bad: ExportRecord| {
        let mut v: Vec<ExportRecord> = (0..5).map(good).collect();
        v[2] = bad;
        v
    };
    let ten_mb = "x".repeat(10 * 1024 * 1024);
    refused(
        &h,
        create(
            "ten-mb",
            ObjectType::Contacts,
            with(contact(
                "big",
                &[("email", "big@x.example"), ("notes", &ten_mb)],
            )),
        ),
        &["records[2]", "\"big\"", "fields[\"notes\"]", "64 KiB"],
    )
    .await;
    refused(
        &h,
        create(
            "wrong-kind",
            ObjectType::Contacts,
            with(company("acme", &[("name", "Acme")])),
        ),
        &[
            "records[2]",
            "\"acme\"",
            "profile.kind",
            "OBJECT_TYPE_CONTACTS",
        ],
    )
    .await;
    refused(
        &h,
        create(
            "no-profile",
            ObjectType::Contacts,
            with(ExportRecord {
                record_id: "bare".into(),
                profile: None,
            }),
        ),
        &["records[2]", "\"bare\"", "profile"],
    )
    .await;
    refused(
        &h,
        create(
            "no-profile-id",
            ObjectType::Contacts,
            with(ExportRecord {
                record_id: "anon".into(),
                profile: Some(Profile {
                    kind: ObjectType::Contacts as i32,
                    ..Default::default()
                }),
            }),
        ),
        &["records[2]", "\"anon\"", "profile.profile_id"],
    )
    .await;
    refused(
        &h,
        create("dup-id", ObjectType::Contacts, {
            let mut v: Vec<ExportRecord> = (0..5).map(good).collect();
            v[3].record_id = "r1".into();
            v
        }),
        &["records[3].record_id", "r1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_fail_their_record_and_the_rest_is_written() {
    let h = Harness::start().await;
    let mut records: Vec<ExportRecord> = (0..6).map(good).collect();
    // An empty record (no field values) and a value HubSpot cannot take as an email.
    records[1] = contact("empty", &[]);
    records[4] = contact(
        "bad-email",
        &[("email", "not an email"), ("first_name", "Bo")],
    );
    let job = h
        .client()
        .await
        .create_export(authed(
            create("values", ObjectType::Contacts, records),
            MAPPED_USER,
        ))
        .await
        .expect("accepted: values are judged per record")
        .into_inner()
        .job
        .expect("job");
    let done = h.wait_terminal(&job.job_id, 90).await;
    let counts = done.counts.expect("counts");
    assert_eq!((counts.created, counts.failed), (4, 2), "{done:?}");
    let results = h
        .client()
        .await
        .list_export_records(authed(
            ListExportRecordsRequest {
                job_id: job.job_id.clone(),
                page_size: 100,
                ..Default::default()
            },
            MAPPED_USER,
        ))
        .await
        .expect("records")
        .into_inner()
        .records;
    for r in &results {
        match r.record_id.as_str() {
            "empty" | "bad-email" => {
                assert_eq!(r.status, RecordStatus::Failed as i32, "{r:?}");
                assert!(!r.message.is_empty(), "a failed record says why: {r:?}");
            }
            _ => {
                assert_eq!(r.status, RecordStatus::Created as i32, "{r:?}");
                assert!(!r.hubspot_id.is_empty(), "{r:?}");
            }
        }
    }
    let bad = results
        .iter()
        .find(|r| r.record_id == "bad-email")
        .expect("bad-email result");
    assert!(bad.message.contains("email"), "names the field: {bad:?}");
    assert_eq!(
        h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"],
        4
    );
}
