//! Checks the API rules of `proto/README.md` against the compiled descriptor set, so a
//! contract change that breaks them fails CI instead of reaching callers:
//! every element documented, one `XxxRequest`/`XxxResponse` per method, paged list
//! methods, buf-style enums, timestamps as `google.protobuf.Timestamp`, one message per
//! Kafka topic.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};

// Field numbers of descriptor.proto, used to build SourceCodeInfo location paths.
const FILE_MESSAGE_TYPE: i32 = 4;
const FILE_ENUM_TYPE: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED_TYPE: i32 = 3;
const MESSAGE_ENUM_TYPE: i32 = 4;
const MESSAGE_ONEOF_DECL: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

/// The services and methods other crates build against (proto brief, DESIGN.md §2).
const SERVICES: &[(&str, &[&str])] = &[
    (
        "spoke.connection.v1.ConnectionService",
        &[
            "StartConnect",
            "CompleteConnect",
            "GetConnection",
            "SetEnabled",
            "SetExportAccountMode",
            "StartChangePrimaryUser",
            "CompleteChangePrimaryUser",
            "Disconnect",
            "DeleteIntegration",
            "UpsertOrgUsers",
            "ListUserMappings",
            "SetUserMapping",
            "ResetUserMappings",
            "RegenerateUserMapping",
            "ResolveOwner",
            "GetAccessToken",
            "AcquireBudget",
            "ReportThrottle",
            "StartUserConnect",
            "CompleteUserConnect",
            "GetUserConnection",
            "DisconnectUser",
            "GetDataSharingSettings",
            "SetDataSharingSettings",
            "SetDataSharingContractOptOut",
            "RecordContribution",
            "ListContributions",
        ],
    ),
    (
        "spoke.mapping.v1.MappingService",
        &[
            "GetMapping",
            "SaveMapping",
            "ResetMapping",
            "ListHubSpotProperties",
            "TestMapping",
            "GetExportPreferences",
            "SaveExportPreferences",
            "ResetExportPreferences",
            "GetDuplicateSettings",
            "SaveDuplicateSettings",
            "GetIntentMapping",
            "SaveIntentMapping",
            "GetCompiledMapping",
        ],
    ),
    ("spoke.dedupe.v1.DedupeService", &["CheckDuplicates"]),
    (
        "spoke.export.v1.ExportService",
        &[
            "CreateExport",
            "GetExport",
            "WatchExport",
            "ListExports",
            "ListExportRecords",
            "ResolveDuplicates",
            "CancelExport",
            "GetWritebackSettings",
            "SaveWritebackSettings",
            "ListWritebackActivities",
        ],
    ),
    (
        "spoke.filtering.v1.FilteringService",
        &[
            "GetFilterSettings",
            "SaveFilterSettings",
            "SetFilteringEnabled",
            "GetSchedule",
            "SaveSchedule",
            "RunNow",
            "GetRun",
            "ListRuns",
            "GetStats",
            "ListMatches",
            "ClearMatches",
            "GetAdvancedSyncSettings",
            "SaveAdvancedSyncSettings",
            "LoadProfiles",
        ],
    ),
];

/// One message type per Kafka topic (DESIGN.md §2, "Kafka topics").
const TOPIC_MESSAGES: &[(&str, &str)] = &[
    (
        "spoke.connection.events.v1",
        "spoke.events.v1.ConnectionEvent",
    ),
    ("spoke.mapping.events.v1", "spoke.events.v1.MappingEvent"),
    (
        "spoke.export.requests.v1",
        "spoke.events.v1.ExportRequestBatch",
    ),
    (
        "spoke.export.checked.v1",
        "spoke.events.v1.ExportCheckedBatch",
    ),
    (
        "spoke.export.results.v1",
        "spoke.events.v1.ExportResultBatch",
    ),
    ("spoke.export.events.v1", "spoke.events.v1.ExportEvent"),
    (
        "spoke.filtering.runs.v1",
        "spoke.events.v1.FilteringRunEvent",
    ),
    (
        "spoke.filtering.events.v1",
        "spoke.events.v1.FilteringMatchEvent",
    ),
    ("spoke.profiles.v1", "spoke.events.v1.ProfileEvent"),
    ("spoke.activities.v1", "spoke.events.v1.ActivityEvent"),
    ("spoke.notifications.v1", "spoke.events.v1.Notification"),
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(spoke_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|err| panic!("FILE_DESCRIPTOR_SET does not decode: {err}"))
}

/// The Spoke files (imports such as google/protobuf/*.proto are left out).
fn spoke_files(set: &FileDescriptorSet) -> Vec<&FileDescriptorProto> {
    set.file
        .iter()
        .filter(|f| f.package().starts_with("spoke."))
        .collect()
}

/// Every message of the set (nested ones included) by full name without leading dot.
fn messages(set: &FileDescriptorSet) -> BTreeMap<String, &DescriptorProto> {
    fn walk<'a>(
        prefix: &str,
        msgs: &'a [DescriptorProto],
        out: &mut BTreeMap<String, &'a DescriptorProto>,
    ) {
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            walk(&name, &m.nested_type, out);
            out.insert(name, m);
        }
    }
    let mut out = BTreeMap::new();
    for file in &set.file {
        walk(file.package(), &file.message_type, &mut out);
    }
    out
}

/// Every enum of the Spoke files (nested ones included) by full name.
fn enums(set: &FileDescriptorSet) -> BTreeMap<String, &EnumDescriptorProto> {
    fn walk<'a>(
        prefix: &str,
        msgs: &'a [DescriptorProto],
        out: &mut BTreeMap<String, &'a EnumDescriptorProto>,
    ) {
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            for e in &m.enum_type {
                out.insert(format!("{name}.{}", e.name()), e);
            }
            walk(&name, &m.nested_type, out);
        }
    }
    let mut out = BTreeMap::new();
    for file in spoke_files(set) {
        for e in &file.enum_type {
            out.insert(format!("{}.{}", file.package(), e.name()), e);
        }
        walk(file.package(), &file.message_type, &mut out);
    }
    out
}

/// Collects the element paths of one file that have no leading `//` comment.
struct DocChecker<'a> {
    file: &'a FileDescriptorProto,
    documented: BTreeSet<Vec<i32>>,
    missing: Vec<String>,
}

impl<'a> DocChecker<'a> {
    fn new(file: &'a FileDescriptorProto) -> Self {
        let documented = file
            .source_code_info
            .as_ref()
            .map(|info| {
                info.location
                    .iter()
                    .filter(|loc| {
                        loc.leading_comments
                            .as_deref()
                            .is_some_and(|c| !c.trim().is_empty())
                    })
                    .map(|loc| loc.path.clone())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            file,
            documented,
            missing: Vec::new(),
        }
    }

    fn require(&mut self, path: &[i32], what: String) {
        if !self.documented.contains(path) {
            self.missing.push(format!("{}: {what}", self.file.name()));
        }
    }

    fn check(mut self) -> Vec<String> {
        let file = self.file;
        let package = file.package();
        for (i, svc) in file.service.iter().enumerate() {
            let path = vec![FILE_SERVICE, i as i32];
            self.require(&path, format!("service {}", svc.name()));
            for (j, method) in svc.method.iter().enumerate() {
                let mut p = path.clone();
                p.extend([SERVICE_METHOD, j as i32]);
                self.require(&p, format!("method {}.{}", svc.name(), method.name()));
            }
        }
        for (i, msg) in file.message_type.iter().enumerate() {
            self.message(&[FILE_MESSAGE_TYPE, i as i32], package, msg);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            self.enumeration(&[FILE_ENUM_TYPE, i as i32], package, e);
        }
        self.missing
    }

    fn message(&mut self, path: &[i32], prefix: &str, msg: &DescriptorProto) {
        let name = format!("{prefix}.{}", msg.name());
        self.require(path, format!("message {name}"));
        for (i, field) in msg.field.iter().enumerate() {
            let p = [path, &[MESSAGE_FIELD, i as i32]].concat();
            self.require(&p, format!("field {name}.{}", field.name()));
        }
        for (i, oneof) in msg.oneof_decl.iter().enumerate() {
            // proto3 `optional` creates a synthetic oneof named `_field`: not written by us.
            if oneof.name().starts_with('_') {
                continue;
            }
            let p = [path, &[MESSAGE_ONEOF_DECL, i as i32]].concat();
            self.require(&p, format!("oneof {name}.{}", oneof.name()));
        }
        for (i, nested) in msg.nested_type.iter().enumerate() {
            if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue; // synthetic map entry types
            }
            let p = [path, &[MESSAGE_NESTED_TYPE, i as i32]].concat();
            self.message(&p, &name, nested);
        }
        for (i, e) in msg.enum_type.iter().enumerate() {
            let p = [path, &[MESSAGE_ENUM_TYPE, i as i32]].concat();
            self.enumeration(&p, &name, e);
        }
    }

    fn enumeration(&mut self, path: &[i32], prefix: &str, e: &EnumDescriptorProto) {
        let name = format!("{prefix}.{}", e.name());
        self.require(path, format!("enum {name}"));
        for (i, value) in e.value.iter().enumerate() {
            let p = [path, &[ENUM_VALUE, i as i32]].concat();
            self.require(&p, format!("enum value {name}.{}", value.name()));
        }
    }
}

#[test]
fn every_service_method_message_field_and_enum_value_is_documented() {
    let set = descriptor_set();
    let files = spoke_files(&set);
    assert!(
        files.len() >= 7,
        "expected the Spoke files, got {}",
        files.len()
    );
    let missing: Vec<String> = files
        .into_iter()
        .flat_map(|file| DocChecker::new(file).check())
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented proto elements (add a `//` comment above each):\n{}",
        missing.join("\n")
    );
}

#[test]
fn services_expose_the_agreed_methods() {
    let set = descriptor_set();
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in spoke_files(&set) {
        for svc in &file.service {
            let methods = svc.method.iter().map(|m| m.name().to_string()).collect();
            found.insert(format!("{}.{}", file.package(), svc.name()), methods);
        }
    }
    for (service, methods) in SERVICES {
        let Some(have) = found.get(*service) else {
            panic!("service {service} is missing; found {:?}", found.keys());
        };
        for method in *methods {
            assert!(have.contains(*method), "{service} lacks method {method}");
        }
    }
    assert_eq!(
        found.len(),
        SERVICES.len(),
        "unexpected services: {:?}",
        found.keys()
    );
}

#[test]
fn each_topic_has_its_event_message() {
    let set = descriptor_set();
    let all = messages(&set);
    for (topic, message) in TOPIC_MESSAGES {
        assert!(
            all.contains_key(*message),
            "topic {topic}: message {message} missing"
        );
    }
    // One message per topic means no two topics share a message type.
    let distinct: BTreeSet<_> = TOPIC_MESSAGES.iter().map(|(_, m)| m).collect();
    assert_eq!(distinct.len(), TOPIC_MESSAGES.len());
}

#[test]
fn every_method_has_its_own_request_and_response_message() {
    let set = descriptor_set();
    let mut bad = Vec::new();
    for file in spoke_files(&set) {
        let pkg = file.package();
        for svc in &file.service {
            for m in &svc.method {
                let want_in = format!(".{pkg}.{}Request", m.name());
                let want_out = format!(".{pkg}.{}Response", m.name());
                if m.input_type() != want_in || m.output_type() != want_out {
                    bad.push(format!(
                        "{}.{}: {} -> {} (want {want_in} -> {want_out})",
                        svc.name(),
                        m.name(),
                        m.input_type(),
                        m.output_type()
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "request/response naming:\n{}",
        bad.join("\n")
    );
}

fn field<'a>(msg: &'a DescriptorProto, name: &str) -> Option<&'a FieldDescriptorProto> {
    msg.field.iter().find(|f| f.name() == name)
}

fn is_singular(f: &FieldDescriptorProto, ty: Type) -> bool {
    f.r#type() == ty && f.label() != Label::Repeated
}

#[test]
fn list_methods_are_paged() {
    let set = descriptor_set();
    let all = messages(&set);
    let mut bad = Vec::new();
    let mut seen = 0;
    for file in spoke_files(&set) {
        for svc in &file.service {
            for m in svc.method.iter().filter(|m| m.name().starts_with("List")) {
                seen += 1;
                let req = all[m.input_type().trim_start_matches('.')];
                let resp = all[m.output_type().trim_start_matches('.')];
                let ok = field(req, "page_size").is_some_and(|f| is_singular(f, Type::Int32))
                    && field(req, "page_token").is_some_and(|f| is_singular(f, Type::String))
                    && field(resp, "next_page_token").is_some_and(|f| is_singular(f, Type::String));
                if !ok {
                    bad.push(format!("{}.{}", svc.name(), m.name()));
                }
            }
        }
    }
    assert!(seen >= 8, "expected the List methods, saw {seen}");
    assert!(
        bad.is_empty(),
        "list methods without int32 page_size / string page_token / string next_page_token: {bad:?}"
    );
}

/// `ExportJobState` -> `EXPORT_JOB_STATE`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[test]
fn screaming_snake_splits_on_capitals() {
    let cases = [
        ("ObjectType", "OBJECT_TYPE"),
        ("ExportJobState", "EXPORT_JOB_STATE"),
        ("HubSpotPlan", "HUB_SPOT_PLAN"),
        ("Weekday", "WEEKDAY"),
    ];
    for (input, want) in cases {
        assert_eq!(screaming_snake(input), want, "{input}");
    }
}

#[test]
fn enums_start_with_prefixed_unspecified_zero_and_prefix_every_value() {
    let set = descriptor_set();
    let mut bad = Vec::new();
    for (name, e) in enums(&set) {
        let prefix = format!("{}_", screaming_snake(e.name()));
        match e.value.first() {
            Some(v) if v.number() == 0 && v.name() == format!("{prefix}UNSPECIFIED") => {}
            other => bad.push(format!(
                "{name}: first value {:?}, want {prefix}UNSPECIFIED = 0",
                other.map(|v| v.name())
            )),
        }
        for v in &e.value {
            if !v.name().starts_with(&prefix) {
                bad.push(format!("{name}.{}: not prefixed with {prefix}", v.name()));
            }
        }
    }
    assert!(bad.is_empty(), "enum style:\n{}", bad.join("\n"));
}

#[test]
fn time_fields_use_well_known_types() {
    let set = descriptor_set();
    let mut bad = Vec::new();
    for (name, msg) in messages(&set) {
        if !name.starts_with("spoke.") {
            continue;
        }
        for f in &msg.field {
            let ty = f.type_name();
            if f.name().ends_with("_at") && ty != ".google.protobuf.Timestamp" {
                bad.push(format!("{name}.{} is {ty:?}, want Timestamp", f.name()));
            }
        }
    }
    assert!(bad.is_empty(), "time fields:\n{}", bad.join("\n"));
}

#[test]
fn requests_carry_no_org_id() {
    // The org comes from the caller's JWT; a request field would invite spoofing.
    let set = descriptor_set();
    let all = messages(&set);
    let mut bad = Vec::new();
    for file in spoke_files(&set) {
        for svc in &file.service {
            for m in &svc.method {
                let req = all[m.input_type().trim_start_matches('.')];
                if field(req, "org_id").is_some() {
                    bad.push(m.name().to_string());
                }
            }
        }
    }
    assert!(bad.is_empty(), "requests with org_id: {bad:?}");
}
