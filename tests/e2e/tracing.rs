//! One export over the real binaries, observed the way on-call sees it:
//!
//! - Traces: an in-test OTLP/gRPC receiver collects every service's spans. The `CreateExport`
//!   server span is the root of one trace that holds the request batches' Kafka hops into dedupe,
//!   dedupe's checks, the checked batches' hops back into export, the writer's chunks and batches
//!   and every HubSpot HTTP call made meanwhile; each consumer span is the child of the span that
//!   produced its message, and each writer chunk links to the checked batches its records came
//!   from (fan-in). The trace tree is printed (run with `--nocapture` to see it).
//! - Metrics: every service's `/metrics` is scraped before and after the export; the key series
//!   exist and the counters moved. Every metric (and label) that deploy/prometheus/alerts.yaml and
//!   deploy/grafana/spoke-dashboard.json use is emitted by some service, and the alerts cover
//!   consumer lag, export failures, 429s, REAUTH_REQUIRED connections and dead letters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use spoke_e2e::{
    DevBroker, SandboxProcess, ServiceProcess, log_dir, spokectl, start_cluster, stop_stack,
    target_dir,
};
use spoke_platform::testing::{fresh_database, http_get, wait_serving};

const ADMIN: (&str, &str, &str, &str) =
    ("org-trace", "admin-1", "admin-1@example.com", "admin,user");
const PORTAL: u64 = 4343;
/// Contacts already in the portal (the export updates them) and contacts exported: two request
/// batches of at most 500, so two checked batches fan in at the writer.
const EXISTING: u64 = 100;
const EXPORTED: u64 = 700;

// ---------------------------------------------------------------------------------------------
// The OTLP receiver

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    kind: i32,
    start: u64,
    attrs: BTreeMap<String, String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map(String::as_str).unwrap_or_default()
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for rs in request.into_inner().resource_spans {
            let resource = rs
                .resource
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    received.push(Span {
                        service: service.clone(),
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                        kind: s.kind,
                        start: s.start_time_unix_nano,
                        attrs: attrs(&s.attributes),
                        links: s
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves the OTLP trace service on a free loopback port; returns its address.
async fn start_receiver(receiver: Receiver) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format

/// One scrape: series (name, sorted labels) → value.
type Scrape = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} in {s}");
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => {}
                },
                '"' => break,
                o => val.push(o),
            }
        }
        labels.insert(key, val);
    }
    labels
}

fn parse_scrape(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, val) = line.rsplit_once(' ').expect("a value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        let v = match val {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("value of {line}: {e}")),
        };
        out.insert((name.to_string(), labels), v);
    }
    out
}

/// Scrapes `/metrics` of `s`, keeping the text next to the logs (`<service>.<label>.metrics`).
async fn scrape(s: &ServiceProcess, label: &str) -> Scrape {
    let (status, body) = http_get(s.admin, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{}: /metrics: {e}", s.name));
    assert_eq!(status, 200, "{}: /metrics answered {status}", s.name);
    let _ = std::fs::write(
        log_dir("tracing").join(format!("{}.{label}.metrics", s.name)),
        &body,
    );
    parse_scrape(&body)
}

/// Sum of the series of `name` whose labels include all of `want`.
fn sum(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    scrape
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum()
}

fn has(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> bool {
    scrape.keys().any(|(n, labels)| {
        n == name
            && want
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// A plain HTTP/1.1 POST of a JSON body (the sandbox's admin API); returns status and body.
async fn http_post(addr: SocketAddr, path: &str, json: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    Ok((status, body.unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// The test

fn ok(services: &[ServiceProcess], args: &[&str]) -> String {
    let (success, out, err) = spokectl(services, ADMIN, args).expect("spokectl runs");
    assert!(success, "spokectl {args:?} failed:\n{out}\n{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_one_trace_and_moves_the_on_call_metrics() {
    let logs = log_dir("tracing");
    let dir = target_dir().join("e2e-data").join("tracing");
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let contacts = dir.join("contacts.ndjson");
    let none: Vec<ServiceProcess> = Vec::new();
    let (portal, existing, exported) = (
        PORTAL.to_string(),
        EXISTING.to_string(),
        EXPORTED.to_string(),
    );
    ok(
        &none,
        &[
            "gen-seed",
            "--portal",
            &portal,
            "--admin-email",
            ADMIN.2,
            "--companies",
            "0",
            "--contacts",
            &existing,
            "--seed",
            "5",
            "--out",
            &seed.display().to_string(),
        ],
    );
    ok(
        &none,
        &[
            "gen",
            "contacts",
            "--count",
            &exported,
            "--seed",
            "5",
            "--out",
            &contacts.display().to_string(),
        ],
    );

    let receiver = Receiver::default();
    let otlp = start_receiver(receiver.clone()).await;
    let broker = DevBroker::start(&logs).expect("dev broker");
    let sandbox = SandboxProcess::start(&seed, &[], &logs).expect("sandbox");
    let db = fresh_database().await.expect("database");
    let mut env = BTreeMap::new();
    env.insert(
        "SPOKE_TELEMETRY__OTLP_ENDPOINT".to_string(),
        format!("http://{otlp}"),
    );
    // Spans leave every 200 ms, and a queue large enough that none is dropped.
    env.insert("OTEL_BSP_SCHEDULE_DELAY".to_string(), "200".to_string());
    env.insert("OTEL_BSP_MAX_QUEUE_SIZE".to_string(), "65536".to_string());
    // One writer worker with chunks smaller than a request batch (see the latency fault below).
    env.insert("SPOKE_WRITER__CHUNK".to_string(), "300".to_string());
    env.insert("SPOKE_WRITER__WORKERS".to_string(), "1".to_string());
    let services = start_cluster(&db, &broker.bootstrap, Some(&sandbox.url), &env, &logs)
        .expect("services start");
    for s in &services {
        wait_serving(s.grpc, s.grpc_service)
            .await
            .unwrap_or_else(|e| panic!("{e}; see {}", s.process.log().display()));
    }

    ok(&services, &["connect", "--auto"]);
    ok(
        &services,
        &["users", "add", "admin-1:admin-1@example.com:admin"],
    );
    ok(&services, &["users", "reset"]);
    ok(&services, &["enable"]);

    let before = scrape_all(&services, "before").await;

    // The writer's first creates answer slowly, so the second request batch is checked while the
    // first chunk is still being written: the next chunk then holds records of both checked
    // batches (fan-in at the writer). Every assertion holds whatever the timing.
    let (status, body) = http_post(
        ([127, 0, 0, 1], sandbox.port).into(),
        "/_sandbox/faults",
        r#"{"route": "/crm/v3/objects/contacts/batch/create", "method": "POST", "count": 3,
            "fault": {"type": "latency", "ms": 2000}}"#,
    )
    .await
    .expect("sandbox fault API");
    assert!((200..300).contains(&status), "{status} {body}");

    // Services learn of the connection from Kafka; the export may have to wait for that.
    let contacts_s = contacts.display().to_string();
    let mut job = serde_json::Value::Null;
    for attempt in 0..60 {
        let (success, out, err) = spokectl(
            &services,
            ADMIN,
            &[
                "export",
                "create",
                &contacts_s,
                "--object",
                "contacts",
                "--on-duplicate",
                "update",
                "--idempotency-key",
                "trace-contacts",
                "--output",
                "json",
            ],
        )
        .unwrap();
        if success {
            job = serde_json::from_str(&out).unwrap();
            break;
        }
        assert!(
            err.contains("not connected") || err.contains("turned off"),
            "unexpected failure: {err}"
        );
        assert!(attempt < 59, "export never accepted: {err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        job["state"] == "COMPLETED" || job["state"] == "COMPLETED_WITH_ERRORS",
        "{job}"
    );
    let job_id = job["job_id"].as_str().expect("job id").to_string();
    // A call that fails is counted with its code.
    let (found, _, err) = spokectl(
        &services,
        ADMIN,
        &["export", "show", "01a2f000-0000-7000-8000-000000000000"],
    )
    .unwrap();
    assert!(!found && err.contains("NotFound"), "{err}");
    let written = job["created"].as_i64().unwrap() + job["updated"].as_i64().unwrap();
    assert!(written > 0, "{job}");

    // Lag is measured every 5 s: wait until the job's topics show no lag (everything consumed
    // and committed).
    for attempt in 0.. {
        let mut caught_up = true;
        for (svc, topic) in [
            ("dedupe", "spoke.export.requests.v1"),
            ("export", "spoke.export.checked.v1"),
        ] {
            let s = services.iter().find(|s| s.name == svc).unwrap();
            let scrape = scrape(s, "lag").await;
            let lag = sum(
                &scrape,
                "spoke_kafka_consumer_lag_messages",
                &[("topic", topic)],
            );
            caught_up &= has(
                &scrape,
                "spoke_kafka_consumer_lag_messages",
                &[("topic", topic)],
            ) && lag == 0.0;
        }
        if caught_up {
            break;
        }
        assert!(
            attempt < 60,
            "consumer lag never came back to 0 after the job"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = scrape_all(&services, "after").await;
    check_metrics(&services, &before, &after, EXPORTED as f64);
    check_alerts_and_dashboard(&after);

    // Stopping the services flushes their span exporters.
    stop_stack(services, Duration::from_secs(30), Some(sandbox), broker);

    let spans = receiver.spans.lock().unwrap().clone();
    check_trace(&spans, &job_id);
}

async fn scrape_all(services: &[ServiceProcess], label: &str) -> Vec<Scrape> {
    let mut out = Vec::new();
    for s in services {
        out.push(scrape(s, label).await);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Trace assertions

fn check_trace(all: &[Span], job_id: &str) {
    // The job's trace: the one its writer chunks belong to.
    let chunks: Vec<&Span> = all
        .iter()
        .filter(|s| s.name == "export.write_chunk" && s.attr("job_id") == job_id)
        .collect();
    assert!(
        !chunks.is_empty(),
        "no export.write_chunk span of job {job_id} among {} spans",
        all.len()
    );
    let trace_id = chunks[0].trace_id.clone();
    let trace: Vec<&Span> = all.iter().filter(|s| s.trace_id == trace_id).collect();
    let by_id: HashMap<&str, &Span> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    print_tree(&trace);

    // The root is CreateExport's server span in the export service.
    let roots: Vec<&&Span> = trace.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    let root = roots[0];
    assert_eq!(
        (root.service.as_str(), root.name.as_str(), root.kind),
        ("spoke-export", "grpc.request", SERVER),
        "{root:#?}"
    );
    assert_eq!(
        root.attr("rpc.method"),
        "/spoke.export.v1.ExportService/CreateExport"
    );
    // Every other span's parent was received: nothing between the hops is lost.
    for s in &trace {
        if let Some(p) = &s.parent {
            assert!(
                by_id.contains_key(p.as_str()),
                "{} [{}] has a parent {p} that is not in the trace",
                s.name,
                s.service
            );
        }
    }
    for chunk in &chunks {
        assert_eq!(
            chunk.trace_id, trace_id,
            "every chunk of the job is in its trace"
        );
    }
    let parent_of = |s: &Span| s.parent.as_deref().and_then(|p| by_id.get(p).copied());
    let descends_from_root = |s: &Span| {
        let mut cur = s;
        for _ in 0..64 {
            match parent_of(cur) {
                Some(p) => cur = p,
                None => return cur.span_id == root.span_id,
            }
        }
        false
    };

    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for svc in [
        "spoke-export",
        "spoke-dedupe",
        "spoke-mapping",
        "spoke-connection",
    ] {
        assert!(
            services.contains(svc),
            "no span of {svc} in the trace: {services:?}"
        );
    }

    // Request batches: export → dedupe. Each consumer span is the child of the export span that
    // enqueued its message.
    let batches = (EXPORTED as usize).div_ceil(500);
    let consumes = |topic: &str, service: &str| -> Vec<&Span> {
        trace
            .iter()
            .copied()
            .filter(|s| {
                s.name == "kafka.consume" && s.attr("topic") == topic && s.service == service
            })
            .collect()
    };
    let requests = consumes("spoke.export.requests.v1", "spoke-dedupe");
    assert_eq!(requests.len(), batches, "request batch hops: {requests:#?}");
    for c in &requests {
        let p = parent_of(c).expect("parent of a request batch hop");
        assert_eq!(p.service, "spoke-export", "{c:#?} parent {p:#?}");
        assert!(
            p.name == "export.create" || p.name == "export.apply_checked",
            "request batches are enqueued by CreateExport or by a checked batch releasing the next: {p:#?}"
        );
    }
    // Dedupe's check of each batch, inside its hop.
    let checks: Vec<&Span> = trace
        .iter()
        .copied()
        .filter(|s| s.name == "dedupe.check_batch")
        .collect();
    assert_eq!(checks.len(), batches);
    for c in &checks {
        let p = parent_of(c).expect("parent of dedupe.check_batch");
        assert_eq!(p.name, "kafka.consume");
        assert_eq!(p.attr("topic"), "spoke.export.requests.v1");
    }
    // Checked batches: dedupe → export, each the child of the check that produced it.
    let checked = consumes("spoke.export.checked.v1", "spoke-export");
    assert_eq!(checked.len(), batches, "checked batch hops");
    for c in &checked {
        let p = parent_of(c).expect("parent of a checked batch hop");
        assert_eq!(
            (p.service.as_str(), p.name.as_str()),
            ("spoke-dedupe", "dedupe.check_batch"),
            "{c:#?}"
        );
    }
    let applied: BTreeSet<&str> = trace
        .iter()
        .filter(|s| s.name == "export.apply_checked")
        .map(|s| s.span_id.as_str())
        .collect();
    assert_eq!(applied.len(), batches);

    // The writer: chunks are children of CreateExport's span (the job's trace) and link to the
    // checked batches whose records they write; together they link every checked batch.
    let mut linked = BTreeSet::new();
    for chunk in &chunks {
        assert_eq!(
            parent_of(chunk).map(|p| p.name.as_str()),
            Some("export.create")
        );
        assert!(!chunk.links.is_empty(), "chunk without links: {chunk:#?}");
        for (t, s) in &chunk.links {
            assert_eq!(t, &trace_id, "links stay in the job's trace");
            assert!(
                applied.contains(s.as_str()),
                "a chunk links to a span that is not a checked batch: {s}"
            );
            linked.insert(s.as_str());
        }
    }
    assert_eq!(linked, applied, "every checked batch reached the writer");
    let fan_in = chunks.iter().filter(|c| c.links.len() > 1).count();
    println!(
        "{} writer chunks, {fan_in} of them fed by more than one checked batch",
        chunks.len()
    );
    let writes: Vec<&Span> = trace
        .iter()
        .copied()
        .filter(|s| s.name == "export.write_batch")
        .collect();
    assert!(!writes.is_empty(), "no export.write_batch span");
    for w in &writes {
        let p = parent_of(w).expect("write batch parent");
        assert_eq!(p.name, "export.write_chunk");
    }

    // HubSpot: every call made from CreateExport until the job ended is a client span of this
    // trace, under the root (dedupe's lookups, the writer's batches, token and owner calls).
    let ended = trace.iter().map(|s| s.start).max().unwrap_or(u64::MAX);
    let calls: Vec<&Span> = all
        .iter()
        .filter(|s| s.name.starts_with("hubspot.") && s.start >= root.start && s.start <= ended)
        .collect();
    assert!(
        calls.iter().any(|s| s.service == "spoke-dedupe"),
        "dedupe looked existing contacts up in HubSpot"
    );
    assert!(
        calls.iter().any(|s| s.service == "spoke-export"),
        "the writer called HubSpot"
    );
    for c in &calls {
        assert_eq!(
            c.trace_id, trace_id,
            "HubSpot call outside the job's trace: {c:#?}"
        );
        assert_eq!(c.kind, CLIENT, "{c:#?}");
        assert!(!c.attr("http.status_code").is_empty(), "{c:#?}");
        assert!(descends_from_root(c), "{c:#?}");
    }
    println!(
        "trace {trace_id}: {} spans from {} services, {} HubSpot calls",
        trace.len(),
        services.len(),
        calls.len()
    );
}

/// Prints the trace as a tree; consecutive siblings with the same name and service are folded.
fn print_tree(trace: &[&Span]) {
    let mut children: HashMap<Option<&str>, Vec<&Span>> = HashMap::new();
    for s in trace {
        children.entry(s.parent.as_deref()).or_default().push(s);
    }
    for v in children.values_mut() {
        v.sort_by_key(|s| s.start);
    }
    fn label(s: &Span) -> String {
        let mut l = format!("{} [{}]", s.name, s.service);
        for key in [
            "rpc.method",
            "topic",
            "job_id",
            "batch_index",
            "records",
            "http.status_code",
        ] {
            let v = s.attr(key);
            if !v.is_empty() {
                l.push_str(&format!(" {key}={v}"));
            }
        }
        if !s.links.is_empty() {
            l.push_str(&format!(" links={}", s.links.len()));
        }
        l
    }
    fn walk(
        id: Option<&str>,
        depth: usize,
        children: &HashMap<Option<&str>, Vec<&Span>>,
        out: &mut String,
    ) {
        let Some(kids) = children.get(&id) else {
            return;
        };
        let mut i = 0;
        while i < kids.len() {
            let s = kids[i];
            let mut same = 1;
            while i + same < kids.len()
                && kids[i + same].name == s.name
                && kids[i + same].service == s.service
                && !children.contains_key(&Some(kids[i + same].span_id.as_str()))
                && !children.contains_key(&Some(s.span_id.as_str()))
            {
                same += 1;
            }
            let fold = if same > 1 {
                format!(" ×{same}")
            } else {
                String::new()
            };
            out.push_str(&format!("{}{}{fold}\n", "  ".repeat(depth), label(s)));
            walk(Some(s.span_id.as_str()), depth + 1, children, out);
            i += same;
        }
    }
    let mut out = String::new();
    walk(None, 0, &children, &mut out);
    println!("--- trace tree ---\n{out}------------------");
}

// ---------------------------------------------------------------------------------------------
// Metric assertions

fn service<'a>(services: &[ServiceProcess], scrapes: &'a [Scrape], name: &str) -> &'a Scrape {
    let i = services
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"));
    &scrapes[i]
}

fn check_metrics(services: &[ServiceProcess], before: &[Scrape], after: &[Scrape], records: f64) {
    let moved = |svc: &str, name: &str, labels: &[(&str, &str)]| {
        let (b, a) = (
            sum(service(services, before, svc), name, labels),
            sum(service(services, after, svc), name, labels),
        );
        assert!(
            a > b,
            "{svc}: {name}{labels:?} did not increase ({b} → {a})"
        );
        a - b
    };

    // Every service: gRPC rate and latency per method, outbox backlog, consumer lag.
    for s in services {
        let scrape = service(services, after, s.name);
        // (Dedupe's own RPC is a preview nobody calls here; health checks count for it.)
        assert!(
            has(scrape, "spoke_grpc_requests_total", &[]),
            "{}: no gRPC request counter",
            s.name
        );
        assert!(
            has(scrape, "spoke_grpc_request_duration_seconds_count", &[]),
            "{}: no gRPC latency histogram",
            s.name
        );
        for gauge in [
            "spoke_outbox_pending_events",
            "spoke_outbox_oldest_pending_seconds",
        ] {
            assert!(has(scrape, gauge, &[]), "{}: no {gauge}", s.name);
        }
        // Every service but connection (the source of connection events) mirrors connections.
        if s.name != "connection" {
            assert!(
                has(
                    scrape,
                    "spoke_kafka_consumer_lag_messages",
                    &[("topic", "spoke.connection.events.v1")]
                ),
                "{}: no consumer lag of the connection events",
                s.name
            );
        }
    }
    let create = [
        ("service", "spoke.export.v1.ExportService"),
        ("method", "CreateExport"),
        ("code", "Ok"),
    ];
    moved("export", "spoke_grpc_requests_total", &create);
    moved(
        "export",
        "spoke_grpc_requests_total",
        &[("method", "WatchExport"), ("code", "Ok")],
    );
    moved(
        "export",
        "spoke_grpc_request_duration_seconds_count",
        &[("method", "CreateExport")],
    );
    moved(
        "export",
        "spoke_grpc_requests_total",
        &[("method", "GetExport"), ("code", "NotFound")],
    );
    moved(
        "mapping",
        "spoke_grpc_requests_total",
        &[("method", "GetCompiledMapping"), ("code", "Ok")],
    );
    moved(
        "connection",
        "spoke_grpc_requests_total",
        &[("method", "AcquireBudget"), ("code", "Ok")],
    );

    // The Kafka hops of the job, on both sides.
    let batches = (EXPORTED as f64 / 500.0).ceil();
    let published = moved(
        "export",
        "spoke_outbox_published_total",
        &[("topic", "spoke.export.requests.v1")],
    );
    assert_eq!(published, batches);
    let consumed = moved(
        "dedupe",
        "spoke_kafka_consumed_total",
        &[
            ("topic", "spoke.export.requests.v1"),
            ("outcome", "processed"),
        ],
    );
    assert_eq!(consumed, batches);
    moved(
        "export",
        "spoke_kafka_consumed_total",
        &[
            ("topic", "spoke.export.checked.v1"),
            ("outcome", "processed"),
        ],
    );
    for (svc, topic) in [
        ("dedupe", "spoke.export.requests.v1"),
        ("export", "spoke.export.checked.v1"),
    ] {
        let scrape = service(services, after, svc);
        assert!(
            has(
                scrape,
                "spoke_kafka_consumer_lag_messages",
                &[("topic", topic)]
            ),
            "{svc}: no lag of {topic}"
        );
        // Everything was consumed and committed: nothing is behind.
        assert_eq!(
            sum(
                scrape,
                "spoke_kafka_consumer_lag_messages",
                &[("topic", topic)]
            ),
            0.0,
            "{svc}: lag on {topic} after the job"
        );
        assert!(has(
            scrape,
            "spoke_kafka_dead_letters_total",
            &[("topic", topic)]
        ));
    }

    // HubSpot calls by status (the writer and dedupe), budget use, job counters.
    moved("export", "spoke_hubspot_requests_total", &[]);
    moved("dedupe", "spoke_hubspot_requests_total", &[]);
    moved("connection", "spoke_connection_budget_granted_total", &[]);
    moved("export", "spoke_hubspot_budget_wait_seconds_count", &[]);
    moved("export", "spoke_export_jobs_created_total", &[]);
    moved("export", "spoke_export_jobs_finished_total", &[]);
    let outcomes = moved("export", "spoke_export_records_total", &[]);
    assert_eq!(outcomes, records, "every record has one outcome");
    moved("dedupe", "spoke_dedupe_decisions_total", &[]);
}

/// Metric names a PromQL text refers to: `spoke_*` tokens and any identifier before a `{` selector.
fn referenced(text: &str) -> Vec<(String, Vec<String>)> {
    let bytes = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let name = &text[start..i];
            let selector = bytes.get(i) == Some(&b'{') && bytes.get(i + 1) != Some(&b'{');
            let is_metric = (name.starts_with("spoke_") && !name.ends_with('_'))
                || (selector && !name.chars().all(|c| c.is_ascii_digit()));
            if is_metric {
                let mut labels = Vec::new();
                if selector && let Some(end) = text[i..].find('}') {
                    for part in text[i + 1..i + end].split(',') {
                        let key: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !key.is_empty() {
                            labels.push(key);
                        }
                    }
                }
                out.push((name.to_string(), labels));
            }
        } else {
            i += 1;
        }
    }
    out
}

fn check_alerts_and_dashboard(scrapes: &[Scrape]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap();
    let dashboard =
        std::fs::read_to_string(root.join("deploy/grafana/spoke-dashboard.json")).unwrap();

    // Every series any service emits, with the label keys seen on it.
    let mut emitted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for scrape in scrapes {
        for (name, labels) in scrape.keys() {
            emitted
                .entry(name.as_str())
                .or_default()
                .extend(labels.keys().map(String::as_str));
        }
    }
    // Labels Prometheus adds when scraping, and `up`, which it synthesizes.
    let scrape_labels = ["namespace", "job", "instance", "pod"];
    let mut problems = Vec::new();
    for (file, text) in [
        ("alerts.yaml", &alerts),
        ("spoke-dashboard.json", &dashboard),
    ] {
        for (name, labels) in referenced(text) {
            if name == "up" {
                continue;
            }
            let Some(keys) = emitted.get(name.as_str()).or_else(|| {
                // A histogram's base name (in prose) stands for its `_count`/`_bucket` series.
                emitted.get(format!("{name}_count").as_str())
            }) else {
                problems.push(format!("{file}: {name} is not emitted by any service"));
                continue;
            };
            for l in labels {
                if !keys.contains(l.as_str()) && !scrape_labels.contains(&l.as_str()) {
                    problems.push(format!("{file}: {name} has no label {l} (it has {keys:?})"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The alerts on-call needs, each on the metric that shows the problem.
    let rules: Vec<&str> = alerts.split("- alert:").skip(1).collect();
    for metric in [
        "spoke_kafka_consumer_lag_messages",
        "spoke_export_records_total",
        "spoke_hubspot_requests_total",
        "spoke_connection_reauth_required",
        "spoke_kafka_dead_letters_total",
    ] {
        assert!(
            rules.iter().any(|r| {
                r.split("expr:")
                    .nth(1)
                    .and_then(|e| e.split("annotations:").next())
                    .is_some_and(|e| e.contains(metric))
            }),
            "no alert expression uses {metric}"
        );
    }
    assert!(
        alerts.contains(r#"status="429""#),
        "an alert on HubSpot 429s"
    );
    assert!(
        alerts.contains(r#"outcome="failed""#),
        "an alert on failed exports"
    );
}

#[test]
fn references_are_found_in_promql() {
    let r = referenced(
        r#"sum by (job) (rate(spoke_hubspot_requests_total{namespace=~"$ns",status="429"}[5m])) / up{job="x"} and {{ $labels.x }} spoke_<service>"#,
    );
    assert_eq!(
        r,
        vec![
            (
                "spoke_hubspot_requests_total".to_string(),
                vec!["namespace".to_string(), "status".to_string()]
            ),
            ("up".to_string(), vec!["job".to_string()]),
        ]
    );
}

#[test]
fn prometheus_text_is_parsed() {
    let s = parse_scrape(
        "# TYPE x counter\nx{a=\"1\",b=\"q\\\"uo,te\"} 3\ny 1.5\nz_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(sum(&s, "x", &[("b", "q\"uo,te")]), 3.0);
    assert_eq!(sum(&s, "y", &[]), 1.5);
    assert_eq!(sum(&s, "z_bucket", &[("le", "+Inf")]), 2.0);
}
