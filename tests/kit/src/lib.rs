//! The host's test kit: what the host's integration tests and benches share.
//!
//! - plugin components built from source (or taken from `SWITCHBOARD_PLUGIN_DIR`), and plugin
//!   runtimes on temp dirs;
//! - [`recorder`]: a local HTTP server that records what it is sent;
//! - [`hub`]: the end-to-end harness: the real `switchboard` binary, the Telegram simulator and
//!   one helpdesk, wired up through the admin API as an admin would.
//!
//! The helpdesks seen from outside (how an installation is set up for each, what tickets they
//! hold, what an agent does there) are product code: `switchboard demo` runs them too, so they
//! live in the host (`switchboard::cli::demo::desk`) and [`hub`] re-exports them. Nothing in
//! the host's library depends on this crate.

pub mod hub;
pub mod recorder;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use switchboard::plugin_build::{build_plugin, BuildOptions};
use switchboard::runtime::{Plugin, Runtime, RuntimeConfig};

/// The source tree's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/kit is two levels below the root")
        .to_path_buf()
}

/// The profile directory the running test binary was built in (`target/debug`): cargo runs
/// integration tests and benches from `<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in a cargo target dir", exe.display()))
        .to_path_buf()
}

/// The `switchboard` binary. Cargo builds a package's binaries before its integration tests
/// and benches, into the profile directory they run from; the kit, being a library, has no
/// `CARGO_BIN_EXE_switchboard` of its own.
pub fn hub_binary() -> PathBuf {
    let path = profile_dir().join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: the kit runs the binary cargo builds for the host's tests",
        path.display()
    );
    path
}

/// Scratch space that outlives one test, as cargo's `CARGO_TARGET_TMPDIR` (`target/tmp`), which
/// cargo sets for integration tests and benches but not for the libraries they use.
pub fn target_tmpdir() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .map_or_else(std::env::temp_dir, |target| target.join("tmp"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// The component of the plugin crate at `crate_dir` (relative to the workspace root), built
/// with `switchboard plugin build`'s code. `SWITCHBOARD_PLUGIN_DIR`, when set, points at
/// components built beforehand (as `scripts/test.sh` does), named `<crate-dir-name>.wasm`.
pub fn component(crate_dir: &str) -> Vec<u8> {
    let name = Path::new(crate_dir)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("crate dir name");
    if let Ok(dir) = std::env::var("SWITCHBOARD_PLUGIN_DIR") {
        let path = Path::new(&dir).join(format!("{name}.wasm"));
        if path.is_file() {
            return std::fs::read(&path).expect("read prebuilt component");
        }
    }
    let built = build_plugin(
        &workspace_root().join(crate_dir),
        &BuildOptions::default(),
        &mut |line| eprintln!("{line}"),
    )
    .unwrap_or_else(|e| panic!("building {crate_dir}: {e:#}"));
    std::fs::read(&built.component_path).expect("read built component")
}

/// A runtime whose plugins may reach loopback over plain http, where the simulators are.
pub fn runtime(dir: &Path) -> Runtime {
    runtime_with_network(dir, true)
}

/// A runtime with the deployment's `allow_private_network` as given.
pub fn runtime_with_network(dir: &Path, allow_private_network: bool) -> Runtime {
    let mut config = RuntimeConfig::new(dir.join("cache"));
    config.network.allow_private_network = allow_private_network;
    Runtime::new(config).expect("runtime")
}

pub async fn load(runtime: &Runtime, wasm: &[u8]) -> Plugin {
    runtime
        .load(wasm)
        .await
        .unwrap_or_else(|e| panic!("load: {e:#}"))
        .0
}

// ----- plugins against simulators ------------------------------------------------------------

/// [`component`], built once per test binary however many tests ask for it.
pub fn component_once(crate_dir: &str) -> Arc<Vec<u8>> {
    static BUILT: OnceLock<Mutex<BTreeMap<String, Arc<Vec<u8>>>>> = OnceLock::new();
    // Held during the build, so concurrent tests wait for one build rather than start several.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(crate_dir.to_string())
        .or_insert_with(|| Arc::new(component(crate_dir)))
        .clone()
}

/// A runtime of its own on `dir`, with the plugin at `crate_dir` loaded.
pub async fn runtime_with_plugin(dir: &Path, crate_dir: &str) -> (Runtime, Plugin) {
    let runtime = runtime(dir);
    let plugin = load(&runtime, &component_once(crate_dir)).await;
    (runtime, plugin)
}
