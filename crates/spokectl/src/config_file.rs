//! The optional config file: `--config FILE`, `SPOKECTL_CONFIG`, or
//! `$XDG_CONFIG_HOME/spokectl/config.toml` (default `~/.config/spokectl/config.toml`) when it exists.
//!
//! ```toml
//! token = "eyJ..."                          # bearer JWT (else one is minted for the dev stack)
//! org = "acme"
//! user = "admin-1"
//! email = "admin-1@acme.example"
//! roles = ["admin", "user"]
//! [endpoints]
//! connection = "https://spoke-connection.internal:50051"
//! export = "https://spoke-export.internal:50051"
//! ```
//!
//! Precedence: flags, then environment, then this file, then the built-in defaults: a file value
//! replaces only what clap filled from a default (or left unset).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::Deserialize;

use crate::cli::{Cli, Global};

/// What the file may set.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Bearer token (JWT).
    pub token: Option<String>,
    /// Org of a minted dev token.
    pub org: Option<String>,
    /// User of a minted dev token.
    pub user: Option<String>,
    /// Email of a minted dev token.
    pub email: Option<String>,
    /// Roles of a minted dev token.
    pub roles: Option<Vec<String>>,
    /// Service endpoints by service name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
}

const SERVICES: [&str; 5] = ["connection", "mapping", "dedupe", "export", "filtering"];

impl FileConfig {
    /// Checks what serde cannot: endpoint names.
    fn check(&self) -> anyhow::Result<()> {
        for service in self.endpoints.keys() {
            anyhow::ensure!(
                SERVICES.contains(&service.as_str()),
                "[endpoints] {service:?} is not a Spoke service (one of {})",
                SERVICES.join(", ")
            );
        }
        Ok(())
    }

    /// Fills `global` from the file where neither a flag nor the environment set a value.
    pub fn merge_into(self, global: &mut Global, matches: &ArgMatches) {
        let from_default = |id: &str| {
            matches!(
                matches.value_source(id),
                None | Some(ValueSource::DefaultValue)
            )
        };
        if global.token.is_none() {
            global.token = self.token;
        }
        if global.email.is_none() {
            global.email = self.email;
        }
        if let Some(org) = self.org.filter(|_| from_default("org")) {
            global.org = org;
        }
        if let Some(user) = self.user.filter(|_| from_default("user")) {
            global.user = user;
        }
        if let Some(roles) = self.roles.filter(|_| from_default("roles")) {
            global.roles = roles;
        }
        for (service, url) in self.endpoints {
            if !from_default(&service) {
                continue;
            }
            match service.as_str() {
                "connection" => global.connection = url,
                "mapping" => global.mapping = url,
                "dedupe" => global.dedupe = url,
                "export" => global.export = url,
                "filtering" => global.filtering = url,
                _ => {}
            }
        }
    }
}

/// The file to read: `--config` / `SPOKECTL_CONFIG`, or the default path when it exists.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let p = base.join("spokectl").join("config.toml");
    p.exists().then_some(p)
}

/// Parses the file's text (figment's TOML provider, as the services read theirs).
fn from_toml(text: &str) -> Result<FileConfig, figment::Error> {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::string(text)).extract()
}

/// Reads and checks a config file; errors name the file and the problem.
pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    let cfg =
        from_toml(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    cfg.check()
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    Ok(cfg)
}

/// Parses the command line and applies the config file under flags and environment.
pub fn parse() -> anyhow::Result<Cli> {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(path) = locate(cli.global.config.as_deref()) {
        read(&path)?.merge_into(&mut cli.global, &matches);
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], file: &str) -> Cli {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        let cfg: FileConfig = from_toml(file).unwrap();
        cfg.check().unwrap();
        cfg.merge_into(&mut cli.global, &matches);
        cli
    }

    #[test]
    fn the_file_fills_what_flags_leave_at_their_defaults() {
        let file = r#"
            token = "file-token"
            org = "acme"
            roles = ["admin", "service"]
            [endpoints]
            export = "http://export.internal:1"
            mapping = "http://mapping.internal:2"
        "#;
        let cli = parse_with(
            &[
                "spokectl",
                "--org",
                "flag-org",
                "--mapping",
                "http://m:9",
                "status",
            ],
            file,
        );
        let g = cli.global;
        assert_eq!(g.token.as_deref(), Some("file-token"));
        assert_eq!(g.org, "flag-org", "a flag wins over the file");
        assert_eq!(g.roles, vec!["admin", "service"]);
        assert_eq!(g.export, "http://export.internal:1");
        assert_eq!(g.mapping, "http://m:9", "a flag wins over the file");
        assert_eq!(g.user, "admin-1", "unset in the file: the default stays");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let unknown = from_toml("colour = 1").unwrap_err().to_string();
        assert!(unknown.contains("colour"), "{unknown}");
        let cfg: FileConfig = from_toml("[endpoints]\nbilling = \"x\"").unwrap();
        let err = cfg.check().unwrap_err().to_string();
        assert!(err.contains("billing"), "{err}");
        let missing = read(Path::new("/nonexistent/spokectl.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/spokectl.toml"), "{missing}");
    }

    #[test]
    fn an_explicit_path_is_used_even_if_missing() {
        let p = Path::new("/nowhere/c.toml");
        assert_eq!(locate(Some(p)), Some(p.to_path_buf()));
    }
}
