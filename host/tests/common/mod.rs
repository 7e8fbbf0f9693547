//! Shared test fixtures: plugin components built from source, and runtimes on temp dirs.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use switchboard::plugin_build::{build_plugin, BuildOptions};
use switchboard::runtime::{Plugin, Runtime, RuntimeConfig};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// The component of the plugin crate at `crate_dir` (relative to the workspace root), built
/// with `switchboard plugin build`'s code. `SWITCHBOARD_PLUGIN_DIR`, when set, points at
/// components built beforehand (as `scripts/test.sh` does), named `<crate-dir-name>.wasm`.
pub fn component(crate_dir: &str) -> Vec<u8> {
    let name = Path::new(crate_dir).file_name().and_then(|n| n.to_str()).expect("crate dir name");
    if let Ok(dir) = std::env::var("SWITCHBOARD_PLUGIN_DIR") {
        let path = Path::new(&dir).join(format!("{name}.wasm"));
        if path.is_file() {
            return std::fs::read(&path).expect("read prebuilt component");
        }
    }
    let built = build_plugin(&workspace_root().join(crate_dir), &BuildOptions::default(), &mut |line| {
        eprintln!("{line}")
    })
    .unwrap_or_else(|e| panic!("building {crate_dir}: {e:#}"));
    std::fs::read(&built.component_path).expect("read built component")
}

pub fn runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig::new(dir.join("cache"))).expect("runtime")
}

pub async fn load(runtime: &Runtime, wasm: &[u8]) -> Plugin {
    runtime.load(wasm).await.unwrap_or_else(|e| panic!("load: {e:#}")).0
}
