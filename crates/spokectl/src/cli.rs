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
    /// Config file (TOML: token, org, user, email, roles, [endpoints]); default
    /// ~/.config/spokectl/config.toml when it exists. Flags and environment win over it.
    #[arg(long, env = "SPOKECTL_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
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
    /// Turn the integration on for the org's users (admin).
    Enable,
    /// Turn the integration off for the org's users (admin); settings are kept.
    Disable,
    /// User mapping between org users and HubSpot users/owners.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Generate realistic provider profiles (deterministic by seed) as NDJSON.
    Gen {
        /// companies or contacts.
        #[arg(value_enum)]
        object: ObjectArg,
        /// How many.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// First index (profiles are numbered; overlapping ranges overlap in identity).
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Universe seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Write a HubSpot sandbox seed: one portal with owners, users and the first N profiles
    /// of the universe already in HubSpot (so an export of an overlapping range finds duplicates).
    GenSeed {
        /// Portal (hub) id.
        #[arg(long, default_value_t = 101)]
        portal: u64,
        /// Email of the portal's Super Admin (the connecting user).
        #[arg(long, default_value = "admin-1@example.com")]
        admin_email: String,
        /// Companies already in HubSpot.
        #[arg(long, default_value_t = 2500)]
        companies: u64,
        /// Contacts already in HubSpot.
        #[arg(long, default_value_t = 2500)]
        contacts: u64,
        /// Universe seed (as for `gen`).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Exports to HubSpot.
    #[command(subcommand)]
    Export(ExportCmd),
    /// HubSpot filtering: enable, run, stats, matches.
    #[command(subcommand)]
    Filtering(FilteringCmd),
    /// Field mapping of companies and contacts (admin).
    #[command(subcommand)]
    Mapping(crate::settings::MappingCmd),
    /// Export preferences and duplicate settings (admin).
    #[command(subcommand)]
    Prefs(crate::settings::PrefsCmd),
    /// Benchmarks against the running cluster; each prints one JSON document.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Provider profiles (the index filtering matches against).
    #[command(subcommand)]
    Profiles(ProfilesCmd),
    /// CRM writeback of activities: settings and activity log.
    #[command(subcommand)]
    Writeback(crate::writeback::WritebackCmd),
    /// Data sharing: toggles, contract opt-out, contributions.
    #[command(subcommand)]
    Sharing(crate::sharing::SharingCmd),
}

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// GetConnection and GetCompiledMapping at a fixed request rate: latency percentiles.
    Config {
        /// Requests per second (arrivals do not wait for answers).
        #[arg(long, default_value_t = 500)]
        rps: u32,
        /// How long.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One export of FILE (CSV or NDJSON) from CreateExport to its end: records/s and outcomes.
    Export {
        /// CSV or NDJSON file of profiles.
        file: std::path::PathBuf,
        /// companies or contacts.
        #[arg(long, value_enum)]
        object: ObjectArg,
        /// Answer duplicate reviews with this choice.
        #[arg(long, value_enum)]
        on_duplicate: Option<OnDuplicate>,
    },
    /// One filtering run of every enabled object: records scanned per second.
    Filtering,
}

/// Filtering commands.
#[derive(Subcommand, Debug)]
pub enum FilteringCmd {
    /// Enable filtering for objects.
    Enable {
        /// Objects (companies, contacts).
        #[arg(value_enum, num_args = 0..)]
        objects: Vec<ObjectArg>,
        /// Include deals.
        #[arg(long)]
        deals: bool,
    },
    /// Disable filtering for objects (future runs stop; matches stay).
    Disable {
        /// Objects (companies, contacts).
        #[arg(value_enum, num_args = 0..)]
        objects: Vec<ObjectArg>,
        /// Include deals.
        #[arg(long)]
        deals: bool,
    },
    /// Start a run now.
    RunNow {
        /// Objects (default: every enabled object).
        #[arg(value_enum, num_args = 0..)]
        objects: Vec<ObjectArg>,
        /// Include deals.
        #[arg(long)]
        deals: bool,
        /// Wait for the run to finish, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Show the filter settings, or change one object's filters (options not given are kept).
    Settings {
        /// The object to change (companies, contacts or deals); without it, show.
        #[arg(long, value_enum)]
        object: Option<FilterObjectArg>,
        /// Only records of these HubSpot owner ids (at most 10; empty: no owner filter).
        #[arg(long, value_delimiter = ',', num_args = 0.., conflicts_with = "exclude_owners")]
        include_owners: Option<Vec<String>>,
        /// All records except those of these HubSpot owner ids (at most 10).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        exclude_owners: Option<Vec<String>>,
        /// Companies: only these company types (e.g. PROSPECT,PARTNER).
        #[arg(long, value_delimiter = ',', num_args = 0.., conflicts_with = "exclude_company_types")]
        include_company_types: Option<Vec<String>>,
        /// Companies: all company types except these.
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        exclude_company_types: Option<Vec<String>>,
        /// Only records with deals.
        #[arg(long)]
        require_deals: Option<bool>,
        /// Contacts: leave out contacts who opted out of email.
        #[arg(long)]
        exclude_email_opt_outs: Option<bool>,
        /// Deals: created within 6m, 1y or 2y.
        #[arg(long, value_enum)]
        deals_created_within: Option<DealWindowArg>,
        /// Email alerts on failed runs, re-auth and limits.
        #[arg(long)]
        email_alerts: Option<bool>,
    },
    /// Show the run schedule, or set it (weekly on a weekday, or monthly on a day).
    Schedule {
        /// weekly or monthly; without it, show.
        #[arg(value_enum)]
        frequency: Option<FrequencyArg>,
        /// Weekly: the weekday (monday..sunday).
        #[arg(long, value_enum)]
        weekday: Option<WeekdayArg>,
        /// Monthly: the day of the month (1..=28).
        #[arg(long)]
        day: Option<i32>,
    },
    /// Status, match rate, linked profiles, last and next match per object.
    Stats,
    /// Matched records.
    Matches {
        /// companies or contacts.
        #[arg(value_enum)]
        object: ObjectArg,
        /// Page size.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
}

/// User-mapping commands.
#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Register org users (USER:EMAIL[:admin], ...) and map them to HubSpot by email.
    Add {
        /// Users as `id:email` or `id:email:admin`.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Show the mapping.
    Map,
    /// Rebuild the mapping from the currently connected portal.
    Reset,
}

/// Profile commands.
#[derive(Subcommand, Debug)]
pub enum ProfilesCmd {
    /// Stream a CSV or NDJSON file of profiles (with `kind` company|contact) into the profile index.
    Load {
        /// The file.
        file: std::path::PathBuf,
    },
}

/// Object of filter settings.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterObjectArg {
    /// HubSpot companies.
    Companies,
    /// HubSpot contacts.
    Contacts,
    /// HubSpot deals.
    Deals,
}

/// How far back deals are imported.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealWindowArg {
    /// Created in the past 6 months.
    #[value(name = "6m")]
    SixMonths,
    /// Created in the past year.
    #[value(name = "1y")]
    OneYear,
    /// Created in the past 2 years.
    #[value(name = "2y")]
    TwoYears,
}

/// Run frequency.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrequencyArg {
    /// Every week on the same weekday.
    Weekly,
    /// Every month on the same day.
    Monthly,
}

/// Day of the week.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum WeekdayArg {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Object of an export or generator.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectArg {
    /// HubSpot companies.
    Companies,
    /// HubSpot contacts.
    Contacts,
}

/// What to do with duplicates found during an export.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Update the existing HubSpot record.
    Update,
    /// Leave it; do not export the record.
    Skip,
    /// Create a duplicate record.
    Create,
}

/// Export commands.
#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// Export the profiles of FILE (CSV or NDJSON) and follow its progress.
    Create {
        /// CSV or NDJSON file of profiles.
        file: std::path::PathBuf,
        /// companies or contacts.
        #[arg(long, value_enum)]
        object: ObjectArg,
        /// Answer duplicate reviews with this choice instead of asking.
        #[arg(long, value_enum)]
        on_duplicate: Option<OnDuplicate>,
        /// A label shown in listings.
        #[arg(long, default_value = "")]
        label: String,
        /// Retry-safe key (a repeated call returns the same job); default: a new one.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Return the job id at once instead of following progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show one export.
    Show {
        /// Job id.
        job_id: String,
    },
    /// List the org's exports.
    List {
        /// Page size.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Cancel an export.
    Cancel {
        /// Job id.
        job_id: String,
    },
}
