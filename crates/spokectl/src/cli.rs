//! Command-line grammar.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Spoke's operator and developer CLI.
#[derive(Parser, Debug)]
#[command(name = "spokectl", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Bearer token (JWT). Without it a dev token is minted for --org/--user/--role.
    #[arg(long, env = "SPOKE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Org for a minted dev token.
    #[arg(long, env = "SPOKE_ORG", default_value = "demo-org", global = true)]
    pub org: String,
    /// User id for a minted dev token.
    #[arg(long, env = "SPOKE_USER", default_value = "admin-1", global = true)]
    pub user: String,
    /// Email for a minted dev token.
    #[arg(long, env = "SPOKE_EMAIL", global = true)]
    pub email: Option<String>,
    /// Roles for a minted dev token (admin, user, service).
    #[arg(long = "role", env = "SPOKE_ROLES", value_delimiter = ',', default_values_t = vec!["admin".to_string(), "user".to_string()], global = true)]
    pub roles: Vec<String>,
    /// Connection service endpoint.
    #[arg(
        long,
        env = "SPOKE_CONNECTION_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub connection: String,
    /// Mapping service endpoint.
    #[arg(
        long,
        env = "SPOKE_MAPPING_ENDPOINT",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub mapping: String,
    /// Dedupe service endpoint.
    #[arg(
        long,
        env = "SPOKE_DEDUPE_ENDPOINT",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    pub dedupe: String,
    /// Export service endpoint.
    #[arg(
        long,
        env = "SPOKE_EXPORT_ENDPOINT",
        default_value = "http://127.0.0.1:50054",
        global = true
    )]
    pub export: String,
    /// Filtering service endpoint.
    #[arg(
        long,
        env = "SPOKE_FILTERING_ENDPOINT",
        default_value = "http://127.0.0.1:50055",
        global = true
    )]
    pub filtering: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
}

/// How results are printed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-friendly tables.
    Table,
    /// One JSON document per result, for scripts.
    Json,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a dev token for --org/--user/--role (signed with the dev secret or SPOKE_AUTH__HS256_SECRET).
    Token,
    /// Show the org's connection and the health of every service.
    Status,
    /// Connect the org's HubSpot portal (prints the authorize URL, or completes it against the sandbox).
    Connect {
        /// Follow the authorize URL automatically (the sandbox consents on its own).
        #[arg(long)]
        auto: bool,
        /// Allow connecting a portal other than the org's current one (resets user mapping).
        #[arg(long)]
        allow_portal_change: bool,
    },
}
