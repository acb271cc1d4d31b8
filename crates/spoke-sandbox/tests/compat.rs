//! HubSpot's official Python client (`hubspot-api-client`) against the sandbox, unchanged.
//!
//! Uses `SPOKE_PYTHON` when set (a python with the package installed); otherwise creates a venv under
//! `target/compat-venv` with `python3 -m venv` and installs `compat/requirements.txt` from PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;

use spoke_sandbox::{Sandbox, SandboxConfig, Seed};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../../target"))
}

fn has_client(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import hubspot"])
        .status()
        .is_ok_and(|s| s.success())
}

/// A python with `hubspot-api-client`, creating the venv when needed.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOKE_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            has_client(&p),
            "SPOKE_PYTHON={} cannot import hubspot; run `{} -m pip install -r crates/spoke-sandbox/compat/requirements.txt`",
            p.display(),
            p.display()
        );
        return p;
    }
    let venv = target_dir().join("compat-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`python3 -m venv {}` failed; install python3-venv or set SPOKE_PYTHON",
            venv.display()
        );
    }
    if !has_client(&py) {
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(crate_dir().join("compat/requirements.txt"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "pip install of hubspot-api-client into {} failed (is PyPI reachable?)",
            venv.display()
        );
    }
    py
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_works_unchanged() {
    let py = tokio::task::spawn_blocking(python)
        .await
        .expect("python setup");
    let seed = Seed::from_file(&crate_dir().join("seed/example.json")).expect("seed");
    let sandbox = Sandbox::start(SandboxConfig {
        seed,
        ..SandboxConfig::default()
    })
    .await
    .expect("start");
    let base = sandbox.base_url();
    let script = crate_dir().join("compat/official_client.py");
    let out = tokio::task::spawn_blocking(move || Command::new(py).arg(script).arg(base).output())
        .await
        .expect("join")
        .expect("run script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "compat script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    sandbox.shutdown().await;
}
