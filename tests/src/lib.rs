//! Harness for end-to-end tests: builds the workspace binaries once, starts them as real
//! processes (dev broker, services, sandbox) on free loopback ports against a fresh Postgres
//! database, waits for health, and stops them with SIGTERM, checking they exit cleanly.
//!
//! Logs of every process go to `target/e2e-logs/<test>/<process>.log`.

pub mod chaos;
pub mod fault_proxy;
pub mod pty;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The five services: binary name suffix, gRPC service name.
pub const SERVICES: &[(&str, &str)] = &[
    ("connection", "spoke.connection.v1.ConnectionService"),
    ("mapping", "spoke.mapping.v1.MappingService"),
    ("dedupe", "spoke.dedupe.v1.DedupeService"),
    ("export", "spoke.export.v1.ExportService"),
    ("filtering", "spoke.filtering.v1.FilteringService"),
];

/// Harness errors are test failures; keep them as readable strings.
pub type Result<T> = std::result::Result<T, String>;

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Builds every binary of the workspace once per test process (a no-op when up to date).
pub fn build_binaries() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--workspace", "--bins", "--quiet"])
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err("cargo build --workspace --bins failed".into());
            }
            Ok(target_dir().join("debug"))
        })
        .clone()
}

/// A free loopback port (bound and released; the tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A child process that is killed if the test ends without stopping it.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `binary` from the build directory with `env`, logging to `log_dir/<name>.log`.
    pub fn start(
        name: &str,
        binary: &str,
        args: &[&str],
        env: &BTreeMap<String, String>,
        log_dir: &Path,
    ) -> Result<Self> {
        let bin = build_binaries()?.join(binary);
        std::fs::create_dir_all(log_dir)
            .map_err(|e| format!("creating {}: {e}", log_dir.display()))?;
        let log = log_dir.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        // Own process group: a Ctrl-C aimed at the caller does not reach the stack directly;
        // the caller stops it with SIGTERM in order.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Sends SIGTERM and waits up to `grace` for a successful exit.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGTERM).map_err(|e| format!("SIGTERM {}: {e}", self.name))?;
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!(
                        "{} exited with {status}; see {}",
                        self.name,
                        self.log.display()
                    ));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return Err(format!(
                        "{} did not exit within {grace:?} of SIGTERM",
                        self.name
                    ));
                }
                Err(e) => return Err(format!("waiting for {}: {e}", self.name)),
            }
        }
    }

    /// Leaves the process running after this handle is gone (the local stack); returns its pid.
    pub fn detach(self) -> u32 {
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }

    /// Kills the process with SIGKILL (fault tests).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The dev broker as a process.
pub struct DevBroker {
    /// The process.
    pub process: Process,
    /// Kafka bootstrap address.
    pub bootstrap: String,
    /// Control API base URL.
    pub control: String,
}

impl DevBroker {
    /// Starts `spoke-devbroker` and waits for its bootstrap address.
    pub fn start(log_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(log_dir).map_err(|e| e.to_string())?;
        let bootstrap_file = log_dir.join("devbroker.bootstrap");
        let control_file = log_dir.join("devbroker.control");
        let _ = std::fs::remove_file(&bootstrap_file);
        let process = Process::start(
            "devbroker",
            "spoke-devbroker",
            &[
                "--bootstrap-file",
                &bootstrap_file.display().to_string(),
                "--control-file",
                &control_file.display().to_string(),
            ],
            &BTreeMap::new(),
            log_dir,
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let (Ok(b), Ok(c)) = (
                std::fs::read_to_string(&bootstrap_file),
                std::fs::read_to_string(&control_file),
            ) && !b.is_empty()
                && !c.is_empty()
            {
                return Ok(Self {
                    process,
                    bootstrap: b.trim().to_string(),
                    control: format!("http://{}", c.trim()),
                });
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dev broker did not start; see {}",
                    process.log().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One running service process and its addresses.
pub struct ServiceProcess {
    /// Service name (`export`, ...).
    pub name: &'static str,
    /// Fully-qualified gRPC service name.
    pub grpc_service: &'static str,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// The process.
    pub process: Process,
}

/// The AES-256 key (base64) the local stack and tests encrypt HubSpot tokens with. Dev only.
pub const DEV_TOKEN_KEY: &str = "c3Bva2UtZGV2LXRva2VuLWtleS0zMi1ieXRlcy0hISE=";

/// The environment a service process needs.
pub fn service_env(
    database_url: &str,
    bootstrap: &str,
    grpc_port: u16,
    admin_port: u16,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("SPOKE_DATABASE__URL".into(), database_url.into());
    env.insert("SPOKE_KAFKA__BOOTSTRAP".into(), bootstrap.into());
    env.insert("SPOKE_KAFKA__CREATE_TOPICS".into(), "false".into());
    env.insert("SPOKE_GRPC__HOST".into(), "127.0.0.1".into());
    env.insert("SPOKE_GRPC__PORT".into(), grpc_port.to_string());
    env.insert("SPOKE_ADMIN__HOST".into(), "127.0.0.1".into());
    env.insert("SPOKE_ADMIN__PORT".into(), admin_port.to_string());
    env.insert(
        "SPOKE_AUTH__HS256_SECRET".into(),
        spoke_platform::testing::DEV_JWT_SECRET.into(),
    );
    env.insert("SPOKE_TELEMETRY__LOG_FORMAT".into(), "json".into());
    env.insert("SPOKE_TELEMETRY__LOG_FILTER".into(), "info".into());
    env.insert("SPOKE_SHUTDOWN_GRACE_SECS".into(), "10".into());
    env
}

/// Starts service `name` with `extra` environment on free ports.
pub fn start_service(
    name: &'static str,
    database_url: &str,
    bootstrap: &str,
    extra: &BTreeMap<String, String>,
    log_dir: &Path,
) -> Result<ServiceProcess> {
    start_service_on(
        name,
        database_url,
        bootstrap,
        (free_port(), free_port()),
        extra,
        log_dir,
    )
}

/// Starts service `name` on the given (gRPC, admin) ports.
pub fn start_service_on(
    name: &'static str,
    database_url: &str,
    bootstrap: &str,
    (gp, ap): (u16, u16),
    extra: &BTreeMap<String, String>,
    log_dir: &Path,
) -> Result<ServiceProcess> {
    let grpc_service = SERVICES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("unknown service {name}"))?;
    let mut env = service_env(database_url, bootstrap, gp, ap);
    if name == "connection" {
        // The OAuth callback listener: loopback, its own free port unless the caller says otherwise.
        env.insert("SPOKE_CALLBACK__HOST".into(), "127.0.0.1".into());
        env.insert("SPOKE_CALLBACK__PORT".into(), free_port().to_string());
        env.insert("SPOKE_TOKENS__ENCRYPTION_KEY".into(), DEV_TOKEN_KEY.into());
    }
    env.extend(extra.clone());
    let process = Process::start(name, &format!("spoke-{name}"), &[], &env, log_dir)?;
    Ok(ServiceProcess {
        name,
        grpc_service,
        grpc: SocketAddr::from(([127, 0, 0, 1], gp)),
        admin: SocketAddr::from(([127, 0, 0, 1], ap)),
        process,
    })
}

/// Where a test's logs go.
pub fn log_dir(test: &str) -> PathBuf {
    target_dir().join("e2e-logs").join(test)
}

/// The HubSpot sandbox as a process on a free port.
pub struct SandboxProcess {
    /// The process.
    pub process: Process,
    /// Base URL (`http://127.0.0.1:port`).
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl SandboxProcess {
    /// Starts `spoke-sandbox` with `seed` (a seed JSON file) and `args`, waiting until it answers.
    pub fn start(seed: &Path, args: &[&str], log_dir: &Path) -> Result<Self> {
        let port = free_port();
        let port_s = port.to_string();
        let seed_s = seed.display().to_string();
        let mut all = vec!["--port", port_s.as_str(), "--seed", seed_s.as_str()];
        all.extend_from_slice(args);
        let process = Process::start("sandbox", "spoke-sandbox", &all, &BTreeMap::new(), log_dir)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "sandbox did not listen on {port}; see {}",
                    process.log().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            port,
        })
    }
}

/// `spokectl` with `args`, pointed at `services`, as `org`/`user`/`email` with `roles`.
pub fn spokectl_command(
    services: &[ServiceProcess],
    identity: (&str, &str, &str, &str),
    args: &[&str],
) -> Result<Command> {
    let (org, user, email, roles) = identity;
    let bin = build_binaries()?.join("spokectl");
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("SPOKE_ORG", org)
        .env("SPOKE_USER", user)
        .env("SPOKE_EMAIL", email)
        .env("SPOKE_ROLES", roles)
        .env_remove("SPOKE_TOKEN");
    for s in services {
        cmd.env(
            format!("SPOKE_{}_ENDPOINT", s.name.to_uppercase()),
            format!("http://{}", s.grpc),
        );
    }
    Ok(cmd)
}

/// Runs `spokectl` with `args` against `services` as `org`/`user` with `roles`; returns
/// (exit success, stdout, stderr).
pub fn spokectl(
    services: &[ServiceProcess],
    identity: (&str, &str, &str, &str),
    args: &[&str],
) -> Result<(bool, String, String)> {
    let out = spokectl_command(services, identity, args)?
        .output()
        .map_err(|e| format!("running spokectl: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Starts all five services wired to each other (connection and mapping endpoints), to
/// `hubspot_url` (the sandbox) if given, on free ports, with `extra` environment for every one.
pub fn start_cluster(
    database_url: &str,
    bootstrap: &str,
    hubspot_url: Option<&str>,
    extra: &BTreeMap<String, String>,
    log_dir: &Path,
) -> Result<Vec<ServiceProcess>> {
    let ports: Vec<(u16, u16)> = SERVICES
        .iter()
        .map(|_| (free_port(), free_port()))
        .collect();
    let grpc_of = |name: &str| {
        SERVICES
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| format!("http://127.0.0.1:{}", ports[i].0))
            .unwrap_or_default()
    };
    let mut env = BTreeMap::new();
    env.insert(
        "SPOKE_CONNECTION__ENDPOINT".to_string(),
        grpc_of("connection"),
    );
    env.insert("SPOKE_MAPPING__ENDPOINT".to_string(), grpc_of("mapping"));
    if let Some(url) = hubspot_url {
        env.insert("SPOKE_HUBSPOT__API_BASE_URL".to_string(), url.to_string());
        env.insert("SPOKE_HUBSPOT__APP_BASE_URL".to_string(), url.to_string());
    }
    env.extend(extra.clone());
    SERVICES
        .iter()
        .zip(ports)
        .map(|((name, _), p)| start_service_on(name, database_url, bootstrap, p, &env, log_dir))
        .collect()
}

/// Stops a whole test stack, checking every process exits cleanly: the services (SIGTERM, `grace`
/// each), then the sandbox and the dev broker. Panics naming the process that did not stop.
pub fn stop_stack(
    services: Vec<ServiceProcess>,
    grace: Duration,
    sandbox: Option<SandboxProcess>,
    broker: DevBroker,
) {
    for s in services {
        let name = s.name;
        s.process
            .stop(grace)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    if let Some(sandbox) = sandbox {
        sandbox
            .process
            .stop(Duration::from_secs(10))
            .expect("sandbox stops");
    }
    broker
        .process
        .stop(Duration::from_secs(10))
        .expect("dev broker stops");
}
