//! The product's main job over the real binaries: a sandbox portal that already holds part of
//! the data, connect, user mapping, enable, then spokectl exports companies and contacts that
//! overlap it. Outcomes are exact, HubSpot holds no duplicates, invalid values fail with the
//! record and the reason, and a repeated export (same idempotency key) is the same job.

use std::collections::BTreeMap;
use std::time::Duration;

use spoke_e2e::{
    DevBroker, SandboxProcess, ServiceProcess, log_dir, pty::run_in_pty, spokectl,
    spokectl_command, start_cluster, stop_stack, target_dir,
};
use spoke_platform::testing::{fresh_database, http_get, wait_serving};

const ADMIN: (&str, &str, &str, &str) =
    ("org-flow", "admin-1", "admin-1@example.com", "admin,user");
const EXISTING: u64 = 300;
const EXPORTED: u64 = 400;

fn ok(services: &[ServiceProcess], args: &[&str]) -> String {
    let (success, out, err) = spokectl(services, ADMIN, args).expect("spokectl runs");
    assert!(success, "spokectl {args:?} failed:\n{out}\n{err}");
    out
}

fn json(services: &[ServiceProcess], args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    let out = ok(services, &all);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("spokectl {args:?} printed no JSON ({e}):\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spokectl_exports_overlapping_profiles_without_duplicates() {
    let logs = log_dir("export_flow");
    let dir = target_dir().join("e2e-data").join("export_flow");
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let (companies, contacts) = (dir.join("companies.ndjson"), dir.join("contacts.ndjson"));

    // spokectl's own generator writes the seed and the files (no services needed for that).
    let no_services: Vec<ServiceProcess> = Vec::new();
    let existing = EXISTING.to_string();
    ok(
        &no_services,
        &[
            "gen-seed",
            "--portal",
            "4242",
            "--admin-email",
            ADMIN.2,
            "--companies",
            &existing,
            "--contacts",
            &existing,
            "--seed",
            "3",
            "--out",
            &seed.display().to_string(),
        ],
    );
    let n = EXPORTED.to_string();
    ok(
        &no_services,
        &[
            "gen",
            "companies",
            "--count",
            &n,
            "--seed",
            "3",
            "--out",
            &companies.display().to_string(),
        ],
    );
    ok(
        &no_services,
        &[
            "gen",
            "contacts",
            "--count",
            &n,
            "--seed",
            "3",
            "--out",
            &contacts.display().to_string(),
        ],
    );

    let broker = DevBroker::start(&logs).expect("dev broker");
    // Search lags writes by a second, as HubSpot's does.
    let sandbox =
        SandboxProcess::start(&seed, &["--search-lag-ms", "1000"], &logs).expect("sandbox");
    let db = fresh_database().await.expect("database");
    let services = start_cluster(
        &db,
        &broker.bootstrap,
        Some(&sandbox.url),
        &BTreeMap::new(),
        &logs,
    )
    .expect("services start");
    for s in &services {
        wait_serving(s.grpc, s.grpc_service)
            .await
            .unwrap_or_else(|e| panic!("{e}; see {}", s.process.log().display()));
    }

    let conn = json(&services, &["connect", "--auto"]);
    assert_eq!(conn["portal_id"], 4242, "{conn}");
    ok(
        &services,
        &["users", "add", "admin-1:admin-1@example.com:admin"],
    );
    ok(&services, &["users", "reset"]);
    ok(&services, &["enable"]);

    // Right after enabling: the export service's mirror may not know yet (Kafka), so this also
    // proves CreateExport confirms with the connection service instead of refusing.
    let (success, out, err) = spokectl(
        &services,
        ADMIN,
        &[
            "export",
            "create",
            &companies.display().to_string(),
            "--object",
            "companies",
            "--on-duplicate",
            "update",
            "--idempotency-key",
            "flow-companies",
            "--output",
            "json",
        ],
    )
    .unwrap();
    assert!(success, "export refused right after enabling: {err}");
    let company_job: serde_json::Value = serde_json::from_str(&out).unwrap();
    let total = EXPORTED as i64;
    assert_eq!(
        company_job["state"], "COMPLETED_WITH_ERRORS",
        "{company_job}"
    );
    assert_eq!(company_job["total"], total);
    let (created, updated, failed) = (
        company_job["created"].as_i64().unwrap(),
        company_job["updated"].as_i64().unwrap(),
        company_job["failed"].as_i64().unwrap(),
    );
    // Profiles below EXISTING are in HubSpot already (updated), the rest are new (created);
    // the generator makes ~2% invalid websites, which fail.
    let new = EXPORTED as i64 - EXISTING as i64;
    assert!(created > 0 && created <= new, "{company_job}");
    assert!(updated > 0 && updated <= EXISTING as i64, "{company_job}");
    assert!(failed > 0 && failed < total / 10, "{company_job}");
    assert_eq!(created + updated + failed, total, "{company_job}");

    // The contacts export runs as a person at a terminal runs it: the progress bar must draw.
    let contacts_arg = contacts.display().to_string();
    let (success, screen) = run_in_pty(
        spokectl_command(
            &services,
            ADMIN,
            &[
                "export",
                "create",
                &contacts_arg,
                "--object",
                "contacts",
                "--on-duplicate",
                "update",
                "--idempotency-key",
                "flow-contacts",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(success, "export in a terminal failed:\n{screen}");
    // indicatif redraws the bar in place (carriage return / cursor control) with the live counts.
    assert!(
        screen.contains("rec/s") && screen.contains("created") && screen.contains("[00:"),
        "no progress bar drawn:\n{screen}"
    );
    assert!(
        screen.contains('\r') || screen.contains("\u{1b}["),
        "progress was not redrawn in place:\n{screen}"
    );
    let listed = json(&services, &["export", "list"]);
    let contact_job = listed
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_id"] != company_job["job_id"]))
        .cloned()
        .unwrap_or_else(|| panic!("the contacts job is listed: {listed}"));
    assert!(
        screen.contains(contact_job["job_id"].as_str().unwrap()),
        "the job id is printed for the person:\n{screen}"
    );
    assert!(
        contact_job["state"] == "COMPLETED" || contact_job["state"] == "COMPLETED_WITH_ERRORS",
        "{contact_job}"
    );
    let c_created = contact_job["created"].as_i64().unwrap();
    let c_updated = contact_job["updated"].as_i64().unwrap();
    assert_eq!(
        c_created + c_updated + contact_job["failed"].as_i64().unwrap(),
        total,
        "{contact_job}"
    );
    assert!(
        c_created > 0 && c_created <= new,
        "only profiles beyond the seeded ones are created: {contact_job}"
    );

    // The same request under the same key is the same job, not a second export; another
    // request under that key is refused.
    let contacts_s = contacts.display().to_string();
    let retry = [
        "export",
        "create",
        contacts_s.as_str(),
        "--object",
        "contacts",
        "--on-duplicate",
        "update",
        "--idempotency-key",
        "flow-contacts",
        "--no-wait",
    ];
    let again = json(&services, &retry);
    assert_eq!(again["job_id"], contact_job["job_id"]);
    let (success, _, err) = spokectl(
        &services,
        ADMIN,
        &[
            "export",
            "create",
            &contacts_s,
            "--object",
            "contacts",
            "--idempotency-key",
            "flow-contacts",
            "--no-wait",
        ],
    )
    .unwrap();
    assert!(
        !success && err.contains("InvalidArgument") && err.contains("idempotency_key"),
        "{err}"
    );

    // HubSpot: no key is held by two records.
    let addr = ([127, 0, 0, 1], sandbox.port).into();
    for object in ["companies", "contacts"] {
        let (status, body) = http_get(addr, &format!("/_sandbox/portals/4242/duplicates/{object}"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["duplicates"].as_array().map(Vec::len),
            Some(0),
            "{object}: {body}"
        );
    }
    let (_, counts) = http_get(addr, "/_sandbox/portals/4242/counts")
        .await
        .unwrap();
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(
        counts["live"]["contacts"],
        EXISTING as i64 + c_created,
        "{counts}"
    );
    assert_eq!(
        counts["live"]["companies"],
        EXISTING as i64 + created,
        "{counts}"
    );

    // The admin's configuration commands: mapping show → edit → test → set (a stale file is
    // refused), export preferences, filter settings and the off-hours schedule.
    let shown = json(&services, &["mapping", "show", "companies"]);
    let version = shown["version"].as_i64().unwrap();
    let mut edited = shown.clone();
    let rows = edited["rows"].as_array_mut().unwrap();
    let phone = rows
        .iter_mut()
        .find(|r| r["target"] == "phone")
        .unwrap_or_else(|| panic!("the default company mapping maps phone: {shown}"));
    phone["update_mode"] = "overwrite".into();
    let mapping_file = dir.join("companies-mapping.json");
    std::fs::write(&mapping_file, edited.to_string()).unwrap();
    let mapping_arg = mapping_file.display().to_string();
    let tested = json(&services, &["mapping", "test", "companies", &mapping_arg]);
    assert_eq!(tested["success"], true, "{tested}");
    assert!(
        tested["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["target"] == "name" && f["status"] == "ok"),
        "{tested}"
    );
    let saved = json(&services, &["mapping", "set", "companies", &mapping_arg]);
    assert!(saved["version"].as_i64().unwrap() > version, "{saved}");
    let phone_mode = |m: &serde_json::Value| {
        m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == "phone")
            .map(|r| r["update_mode"].clone())
    };
    assert_eq!(phone_mode(&saved), Some("overwrite".into()), "{saved}");
    let (success, _, err) = spokectl(
        &services,
        ADMIN,
        &["mapping", "set", "companies", &mapping_arg],
    )
    .unwrap();
    assert!(
        !success && err.contains("Aborted"),
        "a file shown before the last save is refused: {err}"
    );
    let prefs = json(
        &services,
        &[
            "prefs",
            "set",
            "--object",
            "contacts",
            "--max-per-export",
            "5000",
            "--default-action",
            "skip",
            "--user-options",
            "update,skip",
        ],
    );
    let contacts_prefs = prefs
        .as_array()
        .and_then(|a| a.iter().find(|p| p["object"] == "contacts"))
        .cloned()
        .unwrap_or_else(|| panic!("{prefs}"));
    assert_eq!(contacts_prefs["max_per_export"], 5000, "{prefs}");
    assert_eq!(contacts_prefs["default_action"], "skip", "{prefs}");
    let (success, _, err) = spokectl(
        &services,
        ADMIN,
        &[
            "prefs",
            "set",
            "--object",
            "contacts",
            "--max-per-export",
            "0",
        ],
    )
    .unwrap();
    assert!(
        !success && err.contains("InvalidArgument") && err.contains("max_per_export"),
        "{err}"
    );
    let filters = json(
        &services,
        &[
            "filtering",
            "settings",
            "--object",
            "contacts",
            "--exclude-email-opt-outs",
            "true",
        ],
    );
    assert!(
        filters["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["object"] == "contacts" && o["exclude_email_opt_outs"] == true),
        "{filters}"
    );
    // The next run is only planned while filtering is on for some object.
    ok(&services, &["filtering", "enable", "contacts"]);
    let schedule = json(
        &services,
        &["filtering", "schedule", "weekly", "--weekday", "tuesday"],
    );
    assert_eq!(schedule["frequency"], "weekly", "{schedule}");
    assert_eq!(schedule["on"], "tuesday", "{schedule}");
    assert_ne!(schedule["next_run_at"], "-", "{schedule}");
    // A user (not an admin) cannot change the mapping.
    let (success, _, err) = spokectl(
        &services,
        ("org-flow", "seller-1", "seller-1@example.com", "user"),
        &["mapping", "reset", "companies"],
    )
    .unwrap();
    assert!(!success && err.contains("PermissionDenied"), "{err}");

    let list = json(&services, &["export", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    stop_stack(services, Duration::from_secs(20), Some(sandbox), broker);
}
