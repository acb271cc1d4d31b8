//! The commands.

use serde_json::json;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_proto::connection::v1::{
    CompleteConnectRequest, Connection, ConnectionStatus, ExportAccountMode, GetConnectionRequest,
    HubSpotPlan, StartConnectRequest,
};
use spoke_proto::connection::v1::{
    ListUserMappingsRequest, MappingStatus, OrgUser, ResetUserMappingsRequest, SetEnabledRequest,
    UpsertOrgUsersRequest,
};

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::output;

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::new(cli.global)?;
    match cli.command {
        Command::Token => {
            println!("{}", ctx.token());
            Ok(())
        }
        Command::Status => status(&ctx).await,
        Command::Connect {
            auto,
            allow_portal_change,
        } => connect(&ctx, auto, allow_portal_change).await,
        Command::Gen {
            object,
            count,
            start,
            seed,
            out,
        } => {
            let profiles: Vec<_> = (start..start + count)
                .map(|i| match object {
                    crate::cli::ObjectArg::Companies => crate::datagen::company(seed, i),
                    crate::cli::ObjectArg::Contacts => crate::datagen::contact(seed, i),
                })
                .collect();
            let kind = match object {
                crate::cli::ObjectArg::Companies => "company",
                crate::cli::ObjectArg::Contacts => "contact",
            };
            let text = crate::profiles::to_ndjson(&profiles, kind);
            match out {
                Some(path) => std::fs::write(&path, text)?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::GenSeed {
            portal,
            admin_email,
            companies,
            contacts,
            seed,
            out,
        } => {
            let value =
                crate::datagen::sandbox_seed(seed, portal, &admin_email, companies, contacts);
            std::fs::write(&out, serde_json::to_vec(&value)?)?;
            Ok(())
        }
        Command::Export(cmd) => crate::export::run(&ctx, cmd).await,
        Command::Enable => set_enabled(&ctx, true).await,
        Command::Disable => set_enabled(&ctx, false).await,
        Command::Users(cmd) => users(&ctx, cmd).await,
        Command::Filtering(cmd) => crate::filtering::run(&ctx, cmd).await,
        Command::Bench(cmd) => crate::bench::run(&ctx, cmd).await,
        Command::Mapping(cmd) => crate::settings::mapping(&ctx, cmd).await,
        Command::Prefs(cmd) => crate::settings::prefs(&ctx, cmd).await,
        Command::Writeback(cmd) => crate::writeback::run(&ctx, cmd).await,
        Command::Sharing(cmd) => crate::sharing::run(&ctx, cmd).await,
        Command::Profiles(crate::cli::ProfilesCmd::Load { file }) => {
            crate::filtering::load_profiles(&ctx, &file).await
        }
    }
}

fn connection_client(
    ctx: &Context,
) -> anyhow::Result<ConnectionServiceClient<tonic::transport::Channel>> {
    Ok(ConnectionServiceClient::new(
        ctx.channel(&ctx.global.connection)?,
    ))
}

async fn status(ctx: &Context) -> anyhow::Result<()> {
    let g = &ctx.global;
    let services = [
        (
            "connection",
            g.connection.as_str(),
            "spoke.connection.v1.ConnectionService",
        ),
        (
            "mapping",
            g.mapping.as_str(),
            "spoke.mapping.v1.MappingService",
        ),
        ("dedupe", g.dedupe.as_str(), "spoke.dedupe.v1.DedupeService"),
        ("export", g.export.as_str(), "spoke.export.v1.ExportService"),
        (
            "filtering",
            g.filtering.as_str(),
            "spoke.filtering.v1.FilteringService",
        ),
    ];
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (name, endpoint, service) in services {
        let health = health(ctx, endpoint, service).await;
        rows.push(vec![name.to_string(), endpoint.to_string(), health.clone()]);
        json_rows.push(json!({"service": name, "endpoint": endpoint, "health": health}));
    }
    let connection = connection_client(ctx)?
        .get_connection(ctx.request(GetConnectionRequest {})?)
        .await;
    let conn_json = match &connection {
        Ok(resp) => resp.get_ref().connection.as_ref().map(connection_json),
        Err(_) => None,
    };
    if g.output == crate::cli::OutputFormat::Json {
        let err = connection
            .as_ref()
            .err()
            .map(|s| format!("{:?}: {}", s.code(), s.message()));
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"services": json_rows, "connection": conn_json, "connection_error": err})
            )?
        );
        return Ok(());
    }
    output::table(
        g.output,
        &["service", "endpoint", "health"],
        &rows,
        &json_rows,
    )?;
    println!();
    match connection {
        Ok(resp) => match resp.into_inner().connection {
            Some(c) => print_connection(ctx, &c)?,
            None => println!("org {} has no connection", g.org),
        },
        Err(s) if s.code() == tonic::Code::NotFound => {
            println!("org {} is not connected: run `spokectl connect`", g.org)
        }
        Err(s) => println!("connection: {:?}: {}", s.code(), s.message()),
    }
    Ok(())
}

async fn health(ctx: &Context, endpoint: &str, service: &str) -> String {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let Ok(channel) = ctx.channel(endpoint) else {
        return "bad endpoint".into();
    };
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest {
        service: service.to_string(),
    });
    match tokio::time::timeout(std::time::Duration::from_secs(3), call).await {
        Ok(Ok(resp)) => match resp.into_inner().status {
            1 => "SERVING".into(),
            2 => "NOT_SERVING".into(),
            other => format!("status {other}"),
        },
        Ok(Err(s)) => format!("{:?}", s.code()),
        Err(_) => "timeout".into(),
    }
}

async fn connect(ctx: &Context, auto: bool, allow_portal_change: bool) -> anyhow::Result<()> {
    let mut client = connection_client(ctx)?;
    let start = client
        .start_connect(ctx.request(StartConnectRequest {
            return_url: String::new(),
            allow_portal_change,
        })?)
        .await?
        .into_inner();
    if !auto {
        println!(
            "Open this URL as a HubSpot Super Admin to connect org {}:\n{}",
            ctx.global.org, start.authorize_url
        );
        return Ok(());
    }
    // The sandbox consents on its own and redirects to the callback with ?code&state.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = http.get(&start.authorize_url).send().await?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the authorize page answered {} without a redirect; open it in a browser instead",
                resp.status()
            )
        })?;
    let url = url::Url::parse(location)?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(err) = param("error") {
        anyhow::bail!("HubSpot refused the connection: {err}");
    }
    let code =
        param("code").ok_or_else(|| anyhow::anyhow!("redirect without a code: {location}"))?;
    let state = param("state").unwrap_or_default();
    let done = client
        .complete_connect(ctx.request(CompleteConnectRequest { code, state })?)
        .await?
        .into_inner();
    if let Some(c) = done.connection {
        if ctx.global.output == crate::cli::OutputFormat::Table {
            println!(
                "connected org {}{}",
                ctx.global.org,
                if done.portal_changed {
                    " (to a different portal: user mapping reset)"
                } else {
                    ""
                }
            );
        }
        print_connection(ctx, &c)?;
    }
    Ok(())
}

fn connection_json(c: &Connection) -> serde_json::Value {
    json!({
        "portal_id": c.portal_id,
        "status": ConnectionStatus::try_from(c.status).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "enabled": c.enabled,
        "export_account_mode": ExportAccountMode::try_from(c.export_account_mode).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "primary_admin_user_id": c.primary_admin_user_id,
        "primary_admin_email": c.primary_admin_email,
        "service_account_email": c.service_account_email,
        "plan": HubSpotPlan::try_from(c.plan).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "account_type": c.account_type,
        "time_zone": c.time_zone,
        "company_currency": c.company_currency,
        "ui_domain": c.ui_domain,
        "status_message": c.status_message,
    })
}

fn print_connection(ctx: &Context, c: &Connection) -> anyhow::Result<()> {
    let j = connection_json(c);
    let s = |k: &str| {
        j[k].as_str()
            .map(str::to_string)
            .unwrap_or_else(|| j[k].to_string())
    };
    output::record(
        ctx.global.output,
        &[
            ("portal", c.portal_id.to_string()),
            ("status", s("status")),
            ("enabled", c.enabled.to_string()),
            ("export account", s("export_account_mode")),
            (
                "primary admin",
                format!("{} <{}>", c.primary_admin_user_id, c.primary_admin_email),
            ),
            ("service account", c.service_account_email.clone()),
            ("plan", s("plan")),
            ("time zone", c.time_zone.clone()),
            ("currency", c.company_currency.clone()),
            ("ui domain", c.ui_domain.clone()),
        ],
        &j,
    )
}

async fn set_enabled(ctx: &Context, enabled: bool) -> anyhow::Result<()> {
    let resp = connection_client(ctx)?
        .set_enabled(ctx.request(SetEnabledRequest { enabled })?)
        .await?
        .into_inner();
    if let Some(c) = resp.connection {
        print_connection(ctx, &c)?;
    }
    Ok(())
}

async fn users(ctx: &Context, cmd: crate::cli::UsersCmd) -> anyhow::Result<()> {
    let mut client = connection_client(ctx)?;
    match cmd {
        crate::cli::UsersCmd::Add { users } => {
            let parsed = users
                .iter()
                .map(|u| {
                    let parts: Vec<&str> = u.split(':').collect();
                    match parts.as_slice() {
                        [id, email] => Ok(OrgUser {
                            user_id: id.to_string(),
                            email: email.to_string(),
                            display_name: id.to_string(),
                            admin: false,
                        }),
                        [id, email, "admin"] => Ok(OrgUser {
                            user_id: id.to_string(),
                            email: email.to_string(),
                            display_name: id.to_string(),
                            admin: true,
                        }),
                        _ => Err(anyhow::anyhow!(
                            "{u:?}: write users as id:email or id:email:admin"
                        )),
                    }
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            client
                .upsert_org_users(ctx.request(UpsertOrgUsersRequest {
                    users: parsed,
                    removed_user_ids: vec![],
                })?)
                .await?;
            list_mappings(ctx, &mut client).await
        }
        crate::cli::UsersCmd::Map => list_mappings(ctx, &mut client).await,
        crate::cli::UsersCmd::Reset => {
            let r = client
                .reset_user_mappings(ctx.request(ResetUserMappingsRequest {})?)
                .await?
                .into_inner();
            output::record(
                ctx.global.output,
                &[
                    ("mapped", r.mapped.to_string()),
                    ("unmapped", r.unmapped.to_string()),
                ],
                &json!({"mapped": r.mapped, "unmapped": r.unmapped}),
            )
        }
    }
}

async fn list_mappings(
    ctx: &Context,
    client: &mut ConnectionServiceClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let resp = client
        .list_user_mappings(ctx.request(ListUserMappingsRequest {
            page_size: 200,
            ..Default::default()
        })?)
        .await?
        .into_inner();
    let status = |s: i32| {
        MappingStatus::try_from(s)
            .map(|m| {
                m.as_str_name()
                    .trim_start_matches("MAPPING_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = resp
        .mappings
        .iter()
        .map(|m| {
            let u = m.user.clone().unwrap_or_default();
            vec![
                u.user_id,
                u.email,
                m.hubspot_email.clone(),
                m.hubspot_owner_id.clone(),
                status(m.status),
            ]
        })
        .collect();
    let json: Vec<_> = resp
        .mappings
        .iter()
        .map(|m| {
            let u = m.user.clone().unwrap_or_default();
            json!({"user_id": u.user_id, "email": u.email, "hubspot_email": m.hubspot_email, "hubspot_owner_id": m.hubspot_owner_id, "status": status(m.status)})
        })
        .collect();
    output::table(
        ctx.global.output,
        &["user", "email", "hubspot user", "owner id", "status"],
        &rows,
        &json,
    )
}
