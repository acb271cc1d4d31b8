//! What an activity becomes in HubSpot: the object type, its properties and inline associations,
//! per log mode. Pure rules, no I/O.

use spoke_hubspot::{
    AssociationSpec, CreateInput, InlineAssociation, ObjectType, Properties, RecordRef,
    engagement_type_id,
};
use spoke_proto::common::v1::ActivityType;
use spoke_proto::events::v1::ActivityEvent;
use spoke_proto::export::v1::WritebackLogMode;

/// Longest subject accepted (characters).
pub const MAX_SUBJECT_CHARS: usize = 1_000;
/// Largest body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Lower-case name of a type, for messages.
pub fn type_label(t: ActivityType) -> &'static str {
    match t {
        ActivityType::Email => "email",
        ActivityType::Call => "call",
        ActivityType::Meeting => "meeting",
        ActivityType::Unspecified => "unspecified",
    }
}

/// Checks an event before it is recorded; the message names the field.
pub fn validate(ev: &ActivityEvent) -> Result<ActivityType, String> {
    let t = ActivityType::try_from(ev.r#type).unwrap_or(ActivityType::Unspecified);
    if t == ActivityType::Unspecified {
        return Err(format!(
            "activity {}: type: must be EMAIL, CALL or MEETING (got {})",
            ev.activity_id, ev.r#type
        ));
    }
    if ev.contact_profile_id.is_empty() && ev.company_profile_id.is_empty() {
        return Err(format!(
            "activity {}: contact_profile_id and company_profile_id are both empty; the activity cannot be associated to a HubSpot record",
            ev.activity_id
        ));
    }
    if ev.occurred_at.is_none() {
        return Err(format!(
            "activity {}: occurred_at: required (HubSpot hs_timestamp)",
            ev.activity_id
        ));
    }
    let n = ev.subject.chars().count();
    if n > MAX_SUBJECT_CHARS {
        return Err(format!(
            "activity {}: subject: {n} characters, at most {MAX_SUBJECT_CHARS}",
            ev.activity_id
        ));
    }
    if ev.body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "activity {}: body: {} bytes, at most {MAX_BODY_BYTES}",
            ev.activity_id,
            ev.body.len()
        ));
    }
    if let Some(d) = &ev.duration
        && (d.seconds < 0 || d.nanos < 0)
    {
        return Err(format!(
            "activity {}: duration: must not be negative",
            ev.activity_id
        ));
    }
    Ok(t)
}

/// The HubSpot object an activity is logged as.
pub fn object_for(t: ActivityType, mode: WritebackLogMode) -> ObjectType {
    match (mode, t) {
        (WritebackLogMode::Tasks, _) => ObjectType::Tasks,
        (_, ActivityType::Call) => ObjectType::Calls,
        (_, ActivityType::Meeting) => ObjectType::Meetings,
        _ => ObjectType::Emails,
    }
}

/// The property holding the title of an engagement (searched together with `hs_timestamp` to
/// find an engagement a crashed attempt may have created).
pub fn title_property(object: ObjectType) -> &'static str {
    match object {
        ObjectType::Tasks => "hs_task_subject",
        ObjectType::Calls => "hs_call_title",
        ObjectType::Meetings => "hs_meeting_title",
        _ => "hs_email_subject",
    }
}

/// `hs_timestamp` in epoch milliseconds.
pub fn timestamp_ms(ev: &ActivityEvent) -> i64 {
    ev.occurred_at
        .as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or_default()
}

fn duration_ms(ev: &ActivityEvent) -> Option<i64> {
    ev.duration
        .as_ref()
        .map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

/// The title written: the subject, or a default naming the type when the subject is empty
/// (HubSpot shows an empty title as "(No subject)", and the recovery search needs a value).
pub fn title(ev: &ActivityEvent, t: ActivityType) -> String {
    let s = ev.subject.trim();
    if s.is_empty() {
        match t {
            ActivityType::Call => "Call".into(),
            ActivityType::Meeting => "Meeting".into(),
            _ => "Email".into(),
        }
    } else {
        s.to_string()
    }
}

fn normalized(outcome: &str) -> String {
    outcome.trim().to_ascii_lowercase().replace(['-', '_'], " ")
}

/// `hs_call_status` of a call outcome. Disposition (`hs_call_disposition`) values are
/// portal-specific option GUIDs, so the outcome's own words go into the notes instead.
fn call_status(outcome: &str) -> &'static str {
    match normalized(outcome).as_str() {
        "no answer" | "not answered" | "unanswered" => "NO_ANSWER",
        "busy" => "BUSY",
        "failed" | "wrong number" => "FAILED",
        "canceled" | "cancelled" => "CANCELED",
        _ => "COMPLETED",
    }
}

/// `hs_meeting_outcome` of a meeting outcome (default COMPLETED: the meeting happened).
fn meeting_outcome(outcome: &str) -> &'static str {
    match normalized(outcome).as_str() {
        "scheduled" => "SCHEDULED",
        "rescheduled" => "RESCHEDULED",
        "no show" | "noshow" => "NO_SHOW",
        "canceled" | "cancelled" => "CANCELED",
        _ => "COMPLETED",
    }
}

fn body_with_outcome(ev: &ActivityEvent) -> String {
    let outcome = ev.outcome.trim();
    match (ev.body.is_empty(), outcome.is_empty()) {
        (_, true) => ev.body.clone(),
        (true, false) => format!("Outcome: {outcome}"),
        (false, false) => format!("{}\n\nOutcome: {outcome}", ev.body),
    }
}

/// The HubSpot records an activity is associated to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// HubSpot contact id.
    pub contact: Option<String>,
    /// HubSpot company id.
    pub company: Option<String>,
}

/// The create request of an activity: its properties (with `hs_timestamp` and the owner when
/// known) and inline associations to the contact and company.
pub fn create_input(
    ev: &ActivityEvent,
    t: ActivityType,
    object: ObjectType,
    owner: Option<&str>,
    targets: &Targets,
) -> CreateInput {
    let mut p = Properties::new();
    let ts = timestamp_ms(ev);
    p.insert("hs_timestamp".into(), ts.to_string());
    if let Some(o) = owner.filter(|o| !o.is_empty()) {
        p.insert("hubspot_owner_id".into(), o.to_string());
    }
    let title = title(ev, t);
    match object {
        ObjectType::Tasks => {
            p.insert("hs_task_subject".into(), title);
            p.insert("hs_task_body".into(), body_with_outcome(ev));
            p.insert("hs_task_status".into(), "COMPLETED".into());
            let kind = match t {
                ActivityType::Email => "EMAIL",
                ActivityType::Call => "CALL",
                _ => "TODO",
            };
            p.insert("hs_task_type".into(), kind.into());
        }
        ObjectType::Emails => {
            p.insert("hs_email_subject".into(), title);
            p.insert("hs_email_text".into(), ev.body.clone());
            let direction = if ev.outbound {
                "EMAIL"
            } else {
                "INCOMING_EMAIL"
            };
            p.insert("hs_email_direction".into(), direction.into());
            p.insert("hs_email_status".into(), "SENT".into());
        }
        ObjectType::Calls => {
            p.insert("hs_call_title".into(), title);
            p.insert("hs_call_body".into(), body_with_outcome(ev));
            if let Some(ms) = duration_ms(ev) {
                p.insert("hs_call_duration".into(), ms.to_string());
            }
            p.insert("hs_call_status".into(), call_status(&ev.outcome).into());
        }
        ObjectType::Meetings => {
            p.insert("hs_meeting_title".into(), title);
            p.insert("hs_meeting_body".into(), ev.body.clone());
            p.insert("hs_meeting_start_time".into(), ts.to_string());
            let end = ts + duration_ms(ev).unwrap_or_default();
            p.insert("hs_meeting_end_time".into(), end.to_string());
            p.insert(
                "hs_meeting_outcome".into(),
                meeting_outcome(&ev.outcome).into(),
            );
        }
        _ => {}
    }
    p.retain(|_, v| !v.is_empty());
    let mut associations = Vec::new();
    for (to, id) in [
        (ObjectType::Contacts, &targets.contact),
        (ObjectType::Companies, &targets.company),
    ] {
        if let (Some(id), Some(type_id)) = (id, engagement_type_id(object, to)) {
            associations.push(InlineAssociation {
                to: RecordRef { id: id.clone() },
                types: vec![AssociationSpec::hubspot_defined(type_id)],
            });
        }
    }
    CreateInput {
        properties: p,
        associations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{Duration, Timestamp};

    fn event(t: ActivityType) -> ActivityEvent {
        ActivityEvent {
            activity_id: "a1".into(),
            org_id: "o".into(),
            user_id: "u".into(),
            r#type: t as i32,
            contact_profile_id: "p-c".into(),
            company_profile_id: "p-co".into(),
            subject: "Intro".into(),
            body: "Hello".into(),
            occurred_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
            duration: Some(Duration {
                seconds: 90,
                nanos: 0,
            }),
            outcome: "No answer".into(),
            outbound: true,
        }
    }

    fn targets() -> Targets {
        Targets {
            contact: Some("11".into()),
            company: Some("22".into()),
        }
    }

    #[test]
    fn every_type_in_both_modes_gets_its_object_properties_and_association_types() {
        use ActivityType::*;
        let cases = [
            (
                Email,
                WritebackLogMode::Engagements,
                ObjectType::Emails,
                198,
                186,
            ),
            (
                Call,
                WritebackLogMode::Engagements,
                ObjectType::Calls,
                194,
                182,
            ),
            (
                Meeting,
                WritebackLogMode::Engagements,
                ObjectType::Meetings,
                200,
                188,
            ),
            (Email, WritebackLogMode::Tasks, ObjectType::Tasks, 204, 192),
            (Call, WritebackLogMode::Tasks, ObjectType::Tasks, 204, 192),
            (
                Meeting,
                WritebackLogMode::Tasks,
                ObjectType::Tasks,
                204,
                192,
            ),
        ];
        for (t, mode, object, to_contact, to_company) in cases {
            let ev = event(t);
            assert_eq!(object_for(t, mode), object, "{t:?} {mode:?}");
            let input = create_input(&ev, t, object, Some("601"), &targets());
            let p = &input.properties;
            assert_eq!(p["hs_timestamp"], "1700000000250");
            assert_eq!(p["hubspot_owner_id"], "601");
            assert_eq!(p[title_property(object)], "Intro");
            let ids: Vec<(String, u32)> = input
                .associations
                .iter()
                .map(|a| (a.to.id.clone(), a.types[0].association_type_id))
                .collect();
            assert_eq!(
                ids,
                vec![("11".into(), to_contact), ("22".into(), to_company)],
                "{t:?} {mode:?}"
            );
        }
    }

    #[test]
    fn engagement_specific_values() {
        let call = create_input(
            &event(ActivityType::Call),
            ActivityType::Call,
            ObjectType::Calls,
            None,
            &targets(),
        );
        assert_eq!(call.properties["hs_call_duration"], "90000");
        assert_eq!(call.properties["hs_call_status"], "NO_ANSWER");
        assert_eq!(
            call.properties["hs_call_body"],
            "Hello\n\nOutcome: No answer"
        );
        assert!(!call.properties.contains_key("hubspot_owner_id"));

        let mut ev = event(ActivityType::Meeting);
        ev.outcome = String::new();
        let meeting = create_input(
            &ev,
            ActivityType::Meeting,
            ObjectType::Meetings,
            None,
            &targets(),
        );
        assert_eq!(meeting.properties["hs_meeting_start_time"], "1700000000250");
        assert_eq!(meeting.properties["hs_meeting_end_time"], "1700000090250");
        assert_eq!(meeting.properties["hs_meeting_outcome"], "COMPLETED");

        let mut ev = event(ActivityType::Email);
        ev.outbound = false;
        ev.subject = "  ".into();
        let email = create_input(
            &ev,
            ActivityType::Email,
            ObjectType::Emails,
            None,
            &Targets {
                contact: Some("11".into()),
                company: None,
            },
        );
        assert_eq!(email.properties["hs_email_direction"], "INCOMING_EMAIL");
        assert_eq!(email.properties["hs_email_subject"], "Email");
        assert_eq!(email.associations.len(), 1);

        let task = create_input(
            &event(ActivityType::Meeting),
            ActivityType::Meeting,
            ObjectType::Tasks,
            None,
            &targets(),
        );
        assert_eq!(task.properties["hs_task_type"], "TODO");
        assert_eq!(task.properties["hs_task_status"], "COMPLETED");
    }

    #[test]
    fn validation_names_the_field() {
        type Change = Box<dyn Fn(&mut ActivityEvent)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|e| e.r#type = 0), "type"),
            (
                Box::new(|e| {
                    e.contact_profile_id.clear();
                    e.company_profile_id.clear()
                }),
                "contact_profile_id",
            ),
            (Box::new(|e| e.occurred_at = None), "occurred_at"),
            (Box::new(|e| e.subject = "x".repeat(1001)), "subject"),
            (Box::new(|e| e.body = "x".repeat(70_000)), "body"),
        ];
        for (change, field) in cases {
            let mut ev = event(ActivityType::Call);
            change(&mut ev);
            let err = validate(&ev).unwrap_err();
            assert!(err.contains(field) && err.contains("a1"), "{field}: {err}");
        }
        assert_eq!(validate(&event(ActivityType::Call)), Ok(ActivityType::Call));
    }
}
