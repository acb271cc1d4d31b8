//! Finds or starts a Postgres server: `DATABASE_URL` if set; else a server on 127.0.0.1:5432;
//! else a throwaway cluster under `target/spoke/pgdata` (initdb + pg_ctl on port 55432),
//! installing Debian's postgresql package first when no server binaries are present.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Port of the throwaway cluster.
const THROWAWAY_PORT: u16 = 55432;

/// Returns an admin URL of a running Postgres, starting one if needed.
pub fn ensure(target: &Path) -> Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        println!("postgres: using DATABASE_URL");
        return Ok(url);
    }
    if reachable(5432) {
        println!("postgres: using the server on 127.0.0.1:5432");
        return Ok("postgres://postgres@127.0.0.1:5432/postgres".into());
    }
    let url = format!("postgres://postgres@127.0.0.1:{THROWAWAY_PORT}/postgres");
    if reachable(THROWAWAY_PORT) {
        println!("postgres: using the throwaway cluster on port {THROWAWAY_PORT}");
        return Ok(url);
    }
    start_throwaway(target)?;
    Ok(url)
}

fn reachable(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

fn bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        return p.parent().map(Path::to_path_buf);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn start_throwaway(target: &Path) -> Result<()> {
    let bin = match bin_dir() {
        Some(b) => b,
        None => {
            println!("postgres: no server found; installing Debian's postgresql package");
            let ok = Command::new("sh")
                .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                bail!(
                    "no Postgres server and apt-get install postgresql failed; set DATABASE_URL to a server"
                );
            }
            bin_dir().context("postgresql installed but initdb not found")?
        }
    };
    let data = target.join("spoke").join("pgdata");
    let log = target.join("spoke").join("postgres.log");
    std::fs::create_dir_all(target.join("spoke"))?;
    // initdb and postgres refuse to run as root: run them as the `postgres` system user.
    let as_pg = |args: &[&str]| -> Result<bool> {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        } else {
            Command::new("env")
        };
        Ok(cmd.args(args).status()?.success())
    };
    if !data.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&data)?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(target.join("spoke"))
                .status()?;
            anyhow::ensure!(status.success(), "chown of {} failed", data.display());
        }
        println!("postgres: initdb {}", data.display());
        let initdb = bin.join("initdb").display().to_string();
        anyhow::ensure!(
            as_pg(&[
                &initdb,
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8"
            ])?,
            "initdb failed"
        );
    }
    let pg_ctl = bin.join("pg_ctl").display().to_string();
    let opts =
        format!("-p {THROWAWAY_PORT} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300");
    anyhow::ensure!(
        as_pg(&[
            &pg_ctl,
            "-D",
            &data.display().to_string(),
            "-l",
            &log.display().to_string(),
            "-o",
            &opts,
            "-w",
            "start"
        ])?,
        "pg_ctl start failed; see {}",
        log.display()
    );
    println!(
        "postgres: throwaway cluster on 127.0.0.1:{THROWAWAY_PORT} (stop: pg_ctl -D {} stop)",
        data.display()
    );
    Ok(())
}

/// Drops databases left by earlier test runs (`spoke_test_*`) that nobody is connected to: a
/// database in use belongs to a test running right now (another suite or a developer's
/// `cargo test` on the same server) and is left alone.
pub async fn drop_test_databases(admin_url: &str) -> Result<usize> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database d WHERE datname LIKE 'spoke\\_test\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut dropped = 0;
    for name in &names {
        // Without FORCE: a test that connected since the query above keeps its database.
        match sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await
        {
            Ok(_) => dropped += 1,
            Err(e) => println!("postgres: kept {name} ({e})"),
        }
    }
    Ok(dropped)
}
