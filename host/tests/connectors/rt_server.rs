//! A real Request Tracker 5 for the RT plugin's tests: `scripts/rt.sh` installs it when it is
//! missing (as root), makes a fresh SQLite instance under the target dir and starts RT's
//! standalone server on a free loopback port, once per test binary. The script's watcher
//! stops the server and removes the instance when the test binary exits.
//!
//! When RT cannot be started the tests fail, saying why. `SWITCHBOARD_SKIP_RT=1` skips them
//! instead, for a developer machine where RT cannot be installed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The running instance and its accounts.
#[derive(Debug)]
pub struct Rt {
    /// `http://127.0.0.1:<port>`: RT's web root, REST 2.0 below `/REST/2.0`.
    pub url: String,
    /// The integration user is `root` (SuperUser).
    pub root_password: String,
    /// An auth token of `root`.
    pub root_token: String,
    /// A privileged user with the usual ticket rights, acting as a human agent would.
    pub agent_user: String,
    pub agent_password: String,
}

/// The instance, started by the first test that asks; `None` when `SWITCHBOARD_SKIP_RT=1`.
/// Panics, with the script's output, when RT cannot be started.
pub fn rt() -> Option<&'static Rt> {
    static RT: OnceLock<Result<Option<Rt>, String>> = OnceLock::new();
    match RT.get_or_init(start) {
        Ok(rt) => rt.as_ref(),
        Err(reason) => panic!("{reason}"),
    }
}

/// Returns early from a test, loudly, when RT tests are skipped.
#[macro_export]
macro_rules! rt_or_skip {
    () => {
        match $crate::rt_server::rt() {
            Some(rt) => rt,
            None => {
                eprintln!(
                    "\n!!!!!! SKIPPED: SWITCHBOARD_SKIP_RT=1, so this Request Tracker test ran \
                     nothing !!!!!!\n"
                );
                return;
            }
        }
    };
}

fn start() -> Result<Option<Rt>, String> {
    if std::env::var("SWITCHBOARD_SKIP_RT").as_deref() == Ok("1") {
        eprintln!(
            "\n!!!!!! SWITCHBOARD_SKIP_RT=1: the Request Tracker tests are SKIPPED and prove \
             nothing. Run them as root (or with RT installed: scripts/rt.sh install) !!!!!!\n"
        );
        return Ok(None);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("host/ has no parent")?
        .to_path_buf();
    let pid = std::process::id();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("rt-{pid}"));
    // A leftover of an earlier binary with the same pid.
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let output = Command::new(root.join("scripts/rt.sh"))
        .arg("start")
        .arg(&dir)
        .arg("--watch-pid")
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("could not run scripts/rt.sh: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "could not start Request Tracker with scripts/rt.sh ({}); it said:\n{}\n\
             On a machine without root, install RT first (scripts/rt.sh install) or set \
             SWITCHBOARD_SKIP_RT=1 to skip these tests.",
            output.status,
            stderr.trim_end()
        ));
    }
    eprintln!(
        "Request Tracker started in {:.1} s:\n{}",
        started.elapsed().as_secs_f64(),
        stderr.trim_end()
    );
    let env = std::fs::read_to_string(dir.join("credentials.env"))
        .map_err(|e| format!("reading {}/credentials.env: {e}", dir.display()))?;
    let value = |key: &str| -> Result<String, String> {
        env.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| format!("{key} missing from credentials.env"))
    };
    Ok(Some(Rt {
        url: value("RT_URL")?,
        root_password: value("RT_ROOT_PASSWORD")?,
        root_token: value("RT_ROOT_TOKEN")?,
        agent_user: value("RT_AGENT_USER")?,
        agent_password: value("RT_AGENT_PASSWORD")?,
    }))
}
