//! HubSpot's standard property sets per object type (a representative subset with real internal names).

use crate::objects::ObjectType;
use crate::seed::{PipelineSeed, PropertyDef, PropertyOption, StageSeed};

fn prop(name: &str, label: &str, kind: &str, field_type: &str, group: &str) -> PropertyDef {
    PropertyDef {
        name: name.into(),
        label: label.into(),
        kind: kind.into(),
        field_type: field_type.into(),
        group_name: group.into(),
        description: String::new(),
        options: Vec::new(),
        calculated: false,
        has_unique_value: false,
        hidden: false,
        hubspot_defined: true,
        read_only_value: false,
        display_order: -1,
    }
}

fn text(name: &str, label: &str, group: &str) -> PropertyDef {
    prop(name, label, "string", "text", group)
}

fn number(name: &str, label: &str, group: &str) -> PropertyDef {
    prop(name, label, "number", "number", group)
}

fn datetime(name: &str, label: &str, group: &str) -> PropertyDef {
    prop(name, label, "datetime", "date", group)
}

fn read_only(mut p: PropertyDef) -> PropertyDef {
    p.read_only_value = true;
    p
}

fn calculated(mut p: PropertyDef) -> PropertyDef {
    p.read_only_value = true;
    p.calculated = true;
    p
}

/// An enumeration whose options are `(internal value, label)` pairs.
fn enumeration(name: &str, label: &str, group: &str, options: &[(&str, &str)]) -> PropertyDef {
    let mut p = prop(name, label, "enumeration", "select", group);
    p.options = options_of(options);
    p
}

/// Builds option lists with display order following the given order.
pub fn options_of(options: &[(&str, &str)]) -> Vec<PropertyOption> {
    options
        .iter()
        .enumerate()
        .map(|(i, (value, label))| PropertyOption {
            label: (*label).into(),
            value: (*value).into(),
            display_order: i as i64,
            hidden: false,
            description: String::new(),
        })
        .collect()
}

const INDUSTRIES: &[(&str, &str)] = &[
    ("ACCOUNTING", "Accounting"),
    ("AIRLINES_AVIATION", "Airlines/Aviation"),
    ("APPAREL_FASHION", "Apparel & Fashion"),
    ("AUTOMOTIVE", "Automotive"),
    ("BANKING", "Banking"),
    ("BIOTECHNOLOGY", "Biotechnology"),
    ("BROADCAST_MEDIA", "Broadcast Media"),
    ("CHEMICALS", "Chemicals"),
    ("COMPUTER_HARDWARE", "Computer Hardware"),
    ("COMPUTER_NETWORKING", "Computer Networking"),
    ("COMPUTER_SOFTWARE", "Computer Software"),
    ("CONSTRUCTION", "Construction"),
    ("CONSUMER_ELECTRONICS", "Consumer Electronics"),
    ("CONSUMER_GOODS", "Consumer Goods"),
    ("E_LEARNING", "E-Learning"),
    ("EDUCATION_MANAGEMENT", "Education Management"),
    ("FINANCIAL_SERVICES", "Financial Services"),
    ("FOOD_BEVERAGES", "Food & Beverages"),
    ("HOSPITAL_HEALTH_CARE", "Hospital & Health Care"),
    (
        "INFORMATION_TECHNOLOGY_AND_SERVICES",
        "Information Technology and Services",
    ),
    ("INSURANCE", "Insurance"),
    ("INTERNET", "Internet"),
    ("MANAGEMENT_CONSULTING", "Management Consulting"),
    ("MARKETING_AND_ADVERTISING", "Marketing and Advertising"),
    ("MEDICAL_DEVICES", "Medical Devices"),
    ("OIL_ENERGY", "Oil & Energy"),
    ("PHARMACEUTICALS", "Pharmaceuticals"),
    ("REAL_ESTATE", "Real Estate"),
    ("RETAIL", "Retail"),
    ("TELECOMMUNICATIONS", "Telecommunications"),
];

const LIFECYCLE: &[(&str, &str)] = &[
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
];

const BOOL_OPTIONS: &[(&str, &str)] = &[("true", "Yes"), ("false", "No")];

/// The standard properties of one object type. `hubspot_owner_id`, `pipeline` and `dealstage` get their
/// options from the portal's owners and pipelines when the portal is built.
pub fn standard_properties(object: ObjectType) -> Vec<PropertyDef> {
    let g = match object {
        ObjectType::Companies => "companyinformation",
        ObjectType::Contacts => "contactinformation",
        ObjectType::Deals => "dealinformation",
        ObjectType::Tasks => "task",
        ObjectType::Calls => "call",
        ObjectType::Emails => "email",
        ObjectType::Meetings => "meeting",
    };
    let mut v = vec![
        calculated(number("hs_object_id", "Record ID", g)),
        calculated(datetime(
            object.last_modified_property(),
            "Last Modified Date",
            g,
        )),
        enumeration("hubspot_owner_id", "Owner", g, &[]),
    ];
    // Read-only as the brief demands: the API may not backdate records.
    v.push(read_only(datetime(
        object.create_date_property(),
        "Create Date",
        g,
    )));
    match object {
        ObjectType::Contacts => {
            let mut email = text("email", "Email", g);
            email.has_unique_value = true;
            v.extend([
                email,
                text("firstname", "First Name", g),
                text("lastname", "Last Name", g),
                text("phone", "Phone Number", g),
                text("mobilephone", "Mobile Phone Number", g),
                text("company", "Company Name", g),
                text("jobtitle", "Job Title", g),
                text("website", "Website URL", g),
                text("address", "Street Address", g),
                text("city", "City", g),
                text("state", "State/Region", g),
                text("zip", "Postal Code", g),
                text("country", "Country/Region", g),
                text("hs_linkedin_url", "LinkedIn URL", g),
                number("associatedcompanyid", "Primary Associated Company ID", g),
                enumeration("lifecyclestage", "Lifecycle Stage", g, LIFECYCLE),
                enumeration(
                    "hs_lead_status",
                    "Lead Status",
                    g,
                    &[
                        ("NEW", "New"),
                        ("OPEN", "Open"),
                        ("IN_PROGRESS", "In Progress"),
                        ("OPEN_DEAL", "Open Deal"),
                        ("UNQUALIFIED", "Unqualified"),
                        ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
                        ("CONNECTED", "Connected"),
                        ("BAD_TIMING", "Bad Timing"),
                    ],
                ),
                {
                    let mut p = enumeration(
                        "hs_email_optout",
                        "Unsubscribed from all email",
                        g,
                        BOOL_OPTIONS,
                    );
                    p.kind = "bool".into();
                    p.field_type = "booleancheckbox".into();
                    p
                },
                calculated(number(
                    "num_associated_deals",
                    "Number of Associated Deals",
                    g,
                )),
            ]);
        }
        ObjectType::Companies => v.extend([
            text("name", "Company name", g),
            text("domain", "Company Domain Name", g),
            text("website", "Website URL", g),
            text("phone", "Phone Number", g),
            text("address", "Street Address", g),
            text("city", "City", g),
            text("state", "State/Region", g),
            text("zip", "Postal Code", g),
            text("country", "Country/Region", g),
            text("description", "Description", g),
            text("linkedin_company_page", "LinkedIn Company Page", g),
            text("founded_year", "Year Founded", g),
            number("numberofemployees", "Number of Employees", g),
            number("annualrevenue", "Annual Revenue", g),
            enumeration("industry", "Industry", g, INDUSTRIES),
            enumeration(
                "type",
                "Type",
                g,
                &[
                    ("PROSPECT", "Prospect"),
                    ("PARTNER", "Partner"),
                    ("RESELLER", "Reseller"),
                    ("VENDOR", "Vendor"),
                    ("OTHER", "Other"),
                ],
            ),
            enumeration("lifecyclestage", "Lifecycle Stage", g, LIFECYCLE),
            calculated(number(
                "num_associated_contacts",
                "Number of Associated Contacts",
                g,
            )),
            calculated(number(
                "num_associated_deals",
                "Number of Associated Deals",
                g,
            )),
        ]),
        ObjectType::Deals => v.extend([
            text("dealname", "Deal Name", g),
            number("amount", "Amount", g),
            datetime("closedate", "Close Date", g),
            text("description", "Deal Description", g),
            enumeration("pipeline", "Pipeline", g, &[]),
            enumeration("dealstage", "Deal Stage", g, &[]),
            enumeration(
                "dealtype",
                "Deal Type",
                g,
                &[
                    ("newbusiness", "New Business"),
                    ("existingbusiness", "Existing Business"),
                ],
            ),
            calculated(number(
                "num_associated_contacts",
                "Number of Associated Contacts",
                g,
            )),
        ]),
        ObjectType::Tasks => v.extend([
            datetime("hs_timestamp", "Due date", g),
            text("hs_task_subject", "Task Title", g),
            prop("hs_task_body", "Notes", "string", "html", g),
            enumeration(
                "hs_task_status",
                "Task Status",
                g,
                &[
                    ("NOT_STARTED", "Not started"),
                    ("IN_PROGRESS", "In progress"),
                    ("WAITING", "Waiting"),
                    ("COMPLETED", "Completed"),
                    ("DEFERRED", "Deferred"),
                ],
            ),
            enumeration(
                "hs_task_priority",
                "Priority",
                g,
                &[
                    ("NONE", "None"),
                    ("LOW", "Low"),
                    ("MEDIUM", "Medium"),
                    ("HIGH", "High"),
                ],
            ),
            enumeration(
                "hs_task_type",
                "Task Type",
                g,
                &[
                    ("EMAIL", "Email"),
                    ("CALL", "Call"),
                    ("TODO", "To-do"),
                    ("LINKED_IN", "LinkedIn"),
                ],
            ),
        ]),
        ObjectType::Calls => v.extend([
            datetime("hs_timestamp", "Activity date", g),
            text("hs_call_title", "Call Title", g),
            prop("hs_call_body", "Call notes", "string", "html", g),
            number("hs_call_duration", "Call duration", g),
            text("hs_call_disposition", "Call outcome", g),
            text("hs_call_from_number", "From Number", g),
            text("hs_call_to_number", "To Number", g),
            enumeration(
                "hs_call_direction",
                "Call direction",
                g,
                &[("INBOUND", "Inbound"), ("OUTBOUND", "Outbound")],
            ),
            enumeration(
                "hs_call_status",
                "Call status",
                g,
                &[
                    ("BUSY", "Busy"),
                    ("CALLING_CRM_USER", "Calling CRM user"),
                    ("CANCELED", "Canceled"),
                    ("COMPLETED", "Completed"),
                    ("CONNECTING", "Connecting"),
                    ("FAILED", "Failed"),
                    ("IN_PROGRESS", "In progress"),
                    ("NO_ANSWER", "No answer"),
                    ("QUEUED", "Queued"),
                    ("RINGING", "Ringing"),
                ],
            ),
        ]),
        ObjectType::Emails => v.extend([
            datetime("hs_timestamp", "Activity date", g),
            text("hs_email_subject", "Email subject", g),
            prop("hs_email_text", "Email body", "string", "textarea", g),
            prop("hs_email_html", "Email HTML", "string", "html", g),
            text("hs_email_headers", "Email headers", g),
            enumeration(
                "hs_email_direction",
                "Email direction",
                g,
                &[
                    ("EMAIL", "Logged or sent email"),
                    ("INCOMING_EMAIL", "Reply email"),
                    ("FORWARDED_EMAIL", "Forwarded email"),
                ],
            ),
            enumeration(
                "hs_email_status",
                "Email send status",
                g,
                &[
                    ("BOUNCED", "Bounced"),
                    ("FAILED", "Failed"),
                    ("SCHEDULED", "Scheduled"),
                    ("SENDING", "Sending"),
                    ("SENT", "Sent"),
                ],
            ),
        ]),
        ObjectType::Meetings => v.extend([
            datetime("hs_timestamp", "Activity date", g),
            text("hs_meeting_title", "Meeting name", g),
            prop(
                "hs_meeting_body",
                "Meeting description",
                "string",
                "html",
                g,
            ),
            prop(
                "hs_internal_meeting_notes",
                "Internal notes",
                "string",
                "html",
                g,
            ),
            text("hs_meeting_location", "Location", g),
            datetime("hs_meeting_start_time", "Start time", g),
            datetime("hs_meeting_end_time", "End time", g),
            enumeration(
                "hs_meeting_outcome",
                "Meeting outcome",
                g,
                &[
                    ("SCHEDULED", "Scheduled"),
                    ("COMPLETED", "Completed"),
                    ("RESCHEDULED", "Rescheduled"),
                    ("NO_SHOW", "No show"),
                    ("CANCELED", "Canceled"),
                ],
            ),
        ]),
    }
    for (i, p) in v.iter_mut().enumerate() {
        p.display_order = i as i64;
    }
    v
}

/// HubSpot's default sales pipeline, used when a seed names none.
pub fn default_deal_pipeline() -> PipelineSeed {
    let stages = [
        (
            "appointmentscheduled",
            "Appointment Scheduled",
            "0.2",
            false,
        ),
        ("qualifiedtobuy", "Qualified To Buy", "0.4", false),
        (
            "presentationscheduled",
            "Presentation Scheduled",
            "0.6",
            false,
        ),
        (
            "decisionmakerboughtin",
            "Decision Maker Bought-In",
            "0.8",
            false,
        ),
        ("contractsent", "Contract Sent", "0.9", false),
        ("closedwon", "Closed Won", "1.0", true),
        ("closedlost", "Closed Lost", "0.0", true),
    ];
    PipelineSeed {
        id: "default".into(),
        label: "Sales Pipeline".into(),
        display_order: 0,
        stages: stages
            .iter()
            .enumerate()
            .map(|(i, (id, label, p, closed))| StageSeed {
                id: (*id).into(),
                label: (*label).into(),
                display_order: i as i64,
                probability: Some((*p).into()),
                is_closed: *closed,
            })
            .collect(),
    }
}
