//! Running a command in a pseudo-terminal, as a person at a terminal would: programs that draw
//! progress only on a terminal (indicatif) draw it here, and the test reads what was drawn.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use nix::pty::{OpenptyResult, Winsize, openpty};

use crate::Result;

/// Runs `cmd` with stdout and stderr on a 120×40 pseudo-terminal (stdin closed); returns the exit
/// status and everything written to the terminal, control sequences included.
pub fn run_in_pty(mut cmd: Command) -> Result<(bool, String)> {
    let size = Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let OpenptyResult { master, slave } =
        openpty(Some(&size), None).map_err(|e| format!("openpty: {e}"))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup pty: {e}"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(dup(&slave)?))
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    let mut child = cmd.spawn().map_err(|e| format!("spawn in pty: {e}"))?;
    // Only the child may hold the terminal's other end, or reading never sees it close.
    drop(slave);
    drop(cmd);
    // Read while the child runs: a full terminal buffer would block its writes.
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // Linux answers EIO once the last holder of the other end has gone.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        out
    });
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let out = reader
        .join()
        .map_err(|_| "pty reader panicked".to_string())?;
    Ok((status.success(), String::from_utf8_lossy(&out).into_owned()))
}
