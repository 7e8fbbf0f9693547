//! `switchboard plugin build <crate-dir>`: compiles a connector crate to a WebAssembly component.
//!
//! Two steps: cargo builds the crate as a core module for `wasm32-unknown-unknown`, then
//! `wit-component` turns that module (which carries its WIT world in a custom section written by
//! `wit-bindgen`) into a component. No WASI adapter is needed: the connector worlds import no WASI.
//!
//! The cargo step takes one of two toolchain routes:
//!
//! - [`BuildRoute::RustupTarget`]: the `rustc` on `PATH` has a prebuilt standard library for
//!   `wasm32-unknown-unknown` (`rustup target add wasm32-unknown-unknown`). The usual case on a
//!   developer's machine.
//! - [`BuildRoute::DebianBuildStd`]: Debian's `rustc-web` toolchain, which ships the standard
//!   library's source, compiles std for wasm itself (`-Zbuild-std`, enabled on that stable
//!   compiler with `RUSTC_BOOTSTRAP=1`). For machines where rustup can't download targets. When
//!   its packages are missing and we run as root, they are installed with `apt-get`.
//!
//! Cargo runs with a cleaned environment: when this runs inside a `cargo test` or `cargo run`,
//! the outer cargo's variables (`RUSTC`, `RUSTFLAGS`, `CARGO_*`, `RUSTUP_TOOLCHAIN`, ...) would
//! otherwise leak into the inner build and point it at the wrong compiler or flags.
//!
//! Release settings that keep plugins small (`opt-level = "s"`, LTO, one codegen unit,
//! `panic = "abort"`, stripped) are passed with `--config`, so third-party crates don't need a
//! `[profile]` section of their own.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// The compilation target of every plugin.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Debian packages of the `DebianBuildStd` route: compiler, cargo, std source, `rust-lld`
/// (in `rust-web-llvm`, only a recommendation of `rustc-web`, which `--no-install-recommends`
/// skips), and the `lld-22` that `rust-lld` links to (its package doesn't depend on it).
pub const DEBIAN_PACKAGES: [&str; 5] = [
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-llvm",
    "lld-22",
];

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_LLD: &str = "/usr/bin/rust-lld";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library/std/Cargo.toml";

/// Settings applied to every build through `--config`, whatever the crate's own profile says.
const PROFILE_CONFIG: [(&str, &str); 5] = [
    ("opt-level", "\"s\""),
    ("lto", "true"),
    ("codegen-units", "1"),
    ("strip", "true"),
    ("panic", "\"abort\""),
];

/// How to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Cargo's target directory. `None` picks a shared one (see [`default_target_dir`]), so the
    /// standard library is compiled once for all plugins rather than once per plugin.
    pub target_dir: Option<PathBuf>,
    /// Build with the release profile (small and fast); `false` builds the dev profile, which
    /// only makes sense to debug a plugin.
    pub release: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            target_dir: None,
            release: true,
        }
    }
}

/// A plugin component, built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPlugin {
    /// The component file (`<crate>.component.wasm`), next to cargo's core module.
    pub component_path: PathBuf,
    /// Which toolchain route built it.
    pub route: BuildRoute,
    /// Size of the component in bytes.
    pub size_bytes: u64,
}

/// Which toolchain compiled a plugin; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildRoute {
    /// The `rustc` on `PATH`, with its installed `wasm32-unknown-unknown` standard library.
    RustupTarget,
    /// Debian's `rustc-web` with `-Zbuild-std`, compiling the standard library from source.
    DebianBuildStd,
}

impl fmt::Display for BuildRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildRoute::RustupTarget => {
                write!(f, "installed {WASM_TARGET} target of the rustc on PATH")
            }
            BuildRoute::DebianBuildStd => {
                write!(
                    f,
                    "Debian rustc-web with -Zbuild-std (std compiled from source)"
                )
            }
        }
    }
}

/// Builds the plugin crate in `crate_dir` and encodes it as a component.
///
/// `progress` receives one line per step (route taken, packages installed, artifact written);
/// cargo's own output goes to stderr as usual.
pub fn build_plugin(
    crate_dir: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<BuiltPlugin> {
    let crate_dir = crate_dir
        .canonicalize()
        .with_context(|| format!("plugin crate directory {}", crate_dir.display()))?;
    let manifest_path = crate_dir.join("Cargo.toml");
    if !manifest_path.is_file() {
        bail!(
            "{} has no Cargo.toml: `switchboard plugin build` takes the directory of a plugin crate",
            crate_dir.display()
        );
    }

    let env = clean_env(std::env::vars_os());
    let facts = ToolchainFacts::probe(&crate_dir, &env);
    let plan = choose_route(&facts).map_err(|missing| anyhow::anyhow!(missing))?;
    if plan.install_debian_packages {
        progress(&format!(
            "no {WASM_TARGET} target installed; installing Debian packages {}",
            DEBIAN_PACKAGES.join(" ")
        ));
        install_debian_packages(&env)?;
    }
    progress(&format!("building with the {}", plan.route));

    let cargo = match plan.route {
        BuildRoute::RustupTarget => OsString::from("cargo"),
        BuildRoute::DebianBuildStd => OsString::from(DEBIAN_CARGO),
    };
    let target_dir = match &options.target_dir {
        Some(dir) => dir.clone(),
        None => default_target_dir(&cargo, &crate_dir, &env, plan.route)?,
    };
    let mut command = cargo_build_command(
        &cargo,
        &manifest_path,
        &target_dir,
        options.release,
        plan.route,
        &env,
    );
    command.current_dir(&crate_dir);
    let stdout = run_capturing_stdout(&mut command, "cargo build")?;
    let module_path = find_wasm_artifact(&stdout, &manifest_path)?;

    let component_path = component_path_for(&module_path);
    let module = std::fs::read(&module_path)
        .with_context(|| format!("reading the core module {}", module_path.display()))?;
    let component = encode_component(&module)
        .with_context(|| format!("encoding {} as a component", module_path.display()))?;
    std::fs::write(&component_path, &component)
        .with_context(|| format!("writing {}", component_path.display()))?;
    let size_bytes = component.len() as u64;
    progress(&format!(
        "component written to {} ({} KiB)",
        component_path.display(),
        size_bytes.div_ceil(1024)
    ));
    Ok(BuiltPlugin {
        component_path,
        route: plan.route,
        size_bytes,
    })
}

/// Turns a core module built with `wit-bindgen` into a component, validating the result.
pub fn encode_component(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}

/// `<dir>/<name>.component.wasm` for the core module `<dir>/<name>.wasm`.
fn component_path_for(module_path: &Path) -> PathBuf {
    let stem = module_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    module_path.with_file_name(format!("{stem}.component.wasm"))
}

// ---------------------------------------------------------------------------------------------
// Environment

/// Whether a variable of the caller's environment may be passed on to the plugin build.
///
/// Dropped: what a running cargo, rustup or build script sets for its children (`CARGO_*` but
/// `CARGO_HOME` and the registry/network settings a user sets, `RUSTC*`, `RUSTDOC*`,
/// `RUSTFLAGS`, `RUSTUP_TOOLCHAIN`, jobserver `MAKEFLAGS`, build-script variables) and anything
/// naming a compiler or linker for a target.
pub fn keep_env_var(name: &str) -> bool {
    const CARGO_USER_SETTINGS: [&str; 5] = [
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
    ];
    const DROPPED_EXACT: [&str; 12] = [
        "RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "RUST_RECURSION_COUNT",
        "MAKEFLAGS",
        "MFLAGS",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
    ];
    if name.starts_with("CARGO") {
        return CARGO_USER_SETTINGS
            .iter()
            .any(|keep| name == *keep || (keep.ends_with('_') && name.starts_with(keep)));
    }
    !(DROPPED_EXACT.contains(&name)
        || name.starts_with("RUSTC")
        || name.starts_with("RUSTDOC")
        || name.starts_with("__CARGO")
        || name.starts_with("DEP_")
        || name.starts_with("CC_")
        || name.starts_with("CFLAGS_")
        || name.starts_with("AR_"))
}

/// The caller's environment minus what [`keep_env_var`] drops, with the outer build's library
/// directories removed from `LD_LIBRARY_PATH`.
pub fn clean_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(name, _)| name.to_str().is_some_and(keep_env_var))
        .filter_map(|(name, value)| {
            if name == "LD_LIBRARY_PATH" {
                // `cargo run`/`cargo test` prepend the toolchain's and target dir's library
                // directories; another toolchain must not load those.
                let kept: Vec<PathBuf> = std::env::split_paths(&value)
                    .filter(|dir| !is_outer_build_lib_dir(dir))
                    .collect();
                if kept.is_empty() {
                    return None;
                }
                let joined = std::env::join_paths(kept).ok()?;
                return Some((name, joined));
            }
            Some((name, value))
        })
        .collect()
}

fn is_outer_build_lib_dir(dir: &Path) -> bool {
    let text = dir.to_string_lossy();
    text.contains("/toolchains/") || text.contains("/rustlib/") || dir.ends_with("deps")
}

fn env_value<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    env.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_os_str())
}

fn command_with_env(program: impl AsRef<OsStr>, env: &[(OsString, OsString)]) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

// ---------------------------------------------------------------------------------------------
// Route choice

/// What the machine offers for building wasm, as probed by [`ToolchainFacts::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolchainFacts {
    /// The `rustc` on `PATH` has a prebuilt standard library for `wasm32-unknown-unknown`.
    pub wasm_target_installed: bool,
    /// `/usr/bin/rustc`, `/usr/bin/cargo`, the std source and a working `rust-lld` are there.
    pub debian_toolchain: bool,
    /// We run as root, so may install packages.
    pub is_root: bool,
    /// `apt-get` is available.
    pub has_apt_get: bool,
}

/// The route to take, and whether its packages must be installed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePlan {
    /// The toolchain route.
    pub route: BuildRoute,
    /// Install [`DEBIAN_PACKAGES`] with `apt-get` before building.
    pub install_debian_packages: bool,
}

/// Picks the route from the facts, or explains what to install.
pub fn choose_route(facts: &ToolchainFacts) -> Result<RoutePlan, String> {
    if facts.wasm_target_installed {
        return Ok(RoutePlan {
            route: BuildRoute::RustupTarget,
            install_debian_packages: false,
        });
    }
    if facts.debian_toolchain {
        return Ok(RoutePlan {
            route: BuildRoute::DebianBuildStd,
            install_debian_packages: false,
        });
    }
    if facts.is_root && facts.has_apt_get {
        return Ok(RoutePlan {
            route: BuildRoute::DebianBuildStd,
            install_debian_packages: true,
        });
    }
    let packages = DEBIAN_PACKAGES.join(" ");
    let mut message = format!(
        "no toolchain can build {WASM_TARGET} plugins here. Either install the target for your \
         Rust toolchain (`rustup target add {WASM_TARGET}`), or, on Debian/Ubuntu, install the \
         toolchain that compiles std from source: `apt-get install {packages}`"
    );
    if facts.has_apt_get {
        message.push_str(" (as root; switchboard does this itself when run as root)");
    }
    Err(message)
}

impl ToolchainFacts {
    /// Looks at the machine. `crate_dir` matters for rustup: a `rust-toolchain.toml` there
    /// selects the toolchain.
    pub fn probe(crate_dir: &Path, env: &[(OsString, OsString)]) -> Self {
        ToolchainFacts {
            wasm_target_installed: path_rustc_has_wasm_std(crate_dir, env),
            debian_toolchain: debian_toolchain_present(),
            is_root: is_root(env),
            has_apt_get: find_on_path("apt-get", env).is_some(),
        }
    }
}

fn path_rustc_has_wasm_std(crate_dir: &Path, env: &[(OsString, OsString)]) -> bool {
    let output = command_with_env("rustc", env)
        .args(["--print", "sysroot"])
        .current_dir(crate_dir)
        .stderr(Stdio::null())
        .output();
    let Ok(output) = output else {
        return false;
    };
    if !output.status.success() {
        return false;
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let lib_dir = sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib");
    dir_has_libstd(&lib_dir)
}

fn dir_has_libstd(lib_dir: &Path) -> bool {
    std::fs::read_dir(lib_dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

fn debian_toolchain_present() -> bool {
    // `exists` follows symlinks: rust-lld is a symlink to lld-22, dangling without that package.
    [DEBIAN_RUSTC, DEBIAN_CARGO, DEBIAN_RUST_LLD, DEBIAN_STD_SRC]
        .iter()
        .all(|path| Path::new(path).exists())
}

fn is_root(env: &[(OsString, OsString)]) -> bool {
    command_with_env("id", env)
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn find_on_path(program: &str, env: &[(OsString, OsString)]) -> Option<PathBuf> {
    let path = env_value(env, "PATH")?;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn install_debian_packages(env: &[(OsString, OsString)]) -> anyhow::Result<()> {
    let mut env = env.to_vec();
    env.push(("DEBIAN_FRONTEND".into(), "noninteractive".into()));
    run_checked(
        command_with_env("apt-get", &env).args(["update", "-q"]),
        "apt-get update",
    )?;
    run_checked(
        command_with_env("apt-get", &env)
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(DEBIAN_PACKAGES),
        "apt-get install",
    )?;
    if !debian_toolchain_present() {
        bail!(
            "installed {} but the toolchain is still incomplete (expected {DEBIAN_RUSTC}, \
             {DEBIAN_CARGO}, {DEBIAN_RUST_LLD} and {DEBIAN_STD_SRC})",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cargo

/// The shared target directory: `<cargo's target dir for the crate>/wasm`.
///
/// For a crate inside a workspace that is the workspace's `target/wasm`, shared by all its
/// plugins; for a standalone crate, `<crate>/target/wasm`. The `wasm` subdirectory keeps the
/// wasm toolchain's build artifacts (build scripts, proc macros, compiled by a possibly different
/// rustc) apart from the native ones, so neither invalidates the other.
fn default_target_dir(
    cargo: &OsStr,
    crate_dir: &Path,
    env: &[(OsString, OsString)],
    route: BuildRoute,
) -> anyhow::Result<PathBuf> {
    let mut command = command_with_env(cargo, env);
    command
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(crate_dir);
    if route == BuildRoute::DebianBuildStd {
        command.env("RUSTC", DEBIAN_RUSTC);
    }
    let stdout = run_capturing_stdout(&mut command, "cargo metadata")?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&stdout).context("parsing `cargo metadata` output")?;
    let target_dir = metadata
        .get("target_directory")
        .and_then(|v| v.as_str())
        .context("`cargo metadata` reported no target_directory")?;
    Ok(Path::new(target_dir).join("wasm"))
}

/// The `cargo build` invocation for a route.
pub fn cargo_build_command(
    cargo: &OsStr,
    manifest_path: &Path,
    target_dir: &Path,
    release: bool,
    route: BuildRoute,
    env: &[(OsString, OsString)],
) -> Command {
    let mut command = command_with_env(cargo, env);
    command
        .arg("build")
        .arg("--lib")
        .arg("--manifest-path")
        .arg(manifest_path)
        .args(["--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--message-format=json-render-diagnostics");
    if release {
        command.arg("--release");
    }
    let profile = if release { "release" } else { "dev" };
    for (key, value) in PROFILE_CONFIG {
        // A debug build keeps its optimization level and debug info; it only needs to abort.
        if !release && key != "panic" {
            continue;
        }
        command
            .arg("--config")
            .arg(format!("profile.{profile}.{key}={value}"));
    }
    if route == BuildRoute::DebianBuildStd {
        command
            .arg("-Zbuild-std=std,panic_abort")
            .env("RUSTC", DEBIAN_RUSTC)
            .env("RUSTC_BOOTSTRAP", "1");
    }
    command.stdin(Stdio::null());
    command
}

/// Runs a command, streaming its stderr to ours, and returns its stdout.
fn run_capturing_stdout(command: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what} ({:?})", command.get_program()))?;
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)
            .with_context(|| format!("reading the output of {what}"))?;
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); see its messages above");
    }
    Ok(stdout)
}

fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The `.wasm` file cargo produced for the crate at `manifest_path`, from its JSON messages.
pub fn find_wasm_artifact(cargo_stdout: &[u8], manifest_path: &Path) -> anyhow::Result<PathBuf> {
    let mut found = None;
    let mut other_artifacts = false;
    for line in cargo_stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue; // not every line is a JSON message
        };
        if message.get("reason").and_then(|v| v.as_str()) != Some("compiler-artifact") {
            continue;
        }
        let same_manifest = message
            .get("manifest_path")
            .and_then(|v| v.as_str())
            .is_some_and(|p| Path::new(p) == manifest_path);
        if !same_manifest {
            continue;
        }
        let wasm = message
            .get("filenames")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .find(|f| f.ends_with(".wasm"));
        match wasm {
            Some(path) => found = Some(PathBuf::from(path)),
            None => other_artifacts = true,
        }
    }
    match found {
        Some(path) => Ok(path),
        None if other_artifacts => bail!(
            "{} built no .wasm file: a plugin crate needs `[lib] crate-type = [\"cdylib\"]`",
            manifest_path.display()
        ),
        None => bail!(
            "cargo reported no artifact for {}; is it a library crate?",
            manifest_path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn env_cleaning_drops_what_an_outer_cargo_sets() {
        let env = clean_env(os(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("CARGO_HOME", "/root/.cargo"),
            ("RUSTUP_HOME", "/root/.rustup"),
            ("CARGO_NET_OFFLINE", "true"),
            ("CARGO_HTTP_PROXY", "http://proxy"),
            ("CARGO_REGISTRIES_CORP_INDEX", "sparse+https://corp"),
            ("HTTPS_PROXY", "http://proxy"),
            ("CARGO", "/root/.rustup/toolchains/x/bin/cargo"),
            ("CARGO_MANIFEST_DIR", "/work/main/host"),
            ("CARGO_PKG_NAME", "switchboard"),
            ("CARGO_TARGET_DIR", "/work/main/target"),
            ("CARGO_ENCODED_RUSTFLAGS", "-Dwarnings"),
            ("CARGO_MAKEFLAGS", "-j --jobserver-fds=3,4"),
            ("CARGO_BUILD_TARGET", "x86_64-unknown-linux-gnu"),
            ("__CARGO_FIX_PLZ", "1"),
            ("RUSTC", "/root/.rustup/toolchains/x/bin/rustc"),
            ("RUSTC_WRAPPER", "sccache"),
            ("RUSTC_WORKSPACE_WRAPPER", "clippy-driver"),
            ("RUSTC_BOOTSTRAP", "1"),
            ("RUSTFLAGS", "-Ctarget-cpu=native"),
            ("RUSTDOCFLAGS", "-Dwarnings"),
            ("RUSTUP_TOOLCHAIN", "stable"),
            ("MAKEFLAGS", "-j"),
            ("OUT_DIR", "/tmp/out"),
            ("TARGET", "x86_64-unknown-linux-gnu"),
            ("DEP_Z_INCLUDE", "/tmp"),
            ("RUST_LOG", "debug"),
            (
                "LD_LIBRARY_PATH",
                "/work/main/target/debug/deps:/root/.rustup/toolchains/x/lib/rustlib/x86_64/lib:/opt/lib",
            ),
        ]));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "CARGO_NET_OFFLINE",
                "CARGO_HTTP_PROXY",
                "CARGO_REGISTRIES_CORP_INDEX",
                "HTTPS_PROXY",
                "RUST_LOG",
                "LD_LIBRARY_PATH",
            ]
        );
        assert_eq!(env.last().unwrap().1, "/opt/lib");
    }

    #[test]
    fn ld_library_path_with_only_build_dirs_is_dropped() {
        let env = clean_env(os(&[("LD_LIBRARY_PATH", "/work/target/debug/deps")]));
        assert!(env.is_empty());
    }

    #[test]
    fn route_prefers_an_installed_target() {
        let all = ToolchainFacts {
            wasm_target_installed: true,
            debian_toolchain: true,
            is_root: true,
            has_apt_get: true,
        };
        assert_eq!(
            choose_route(&all),
            Ok(RoutePlan {
                route: BuildRoute::RustupTarget,
                install_debian_packages: false
            })
        );
    }

    #[test]
    fn route_falls_back_to_debian() {
        let facts = ToolchainFacts {
            debian_toolchain: true,
            ..Default::default()
        };
        assert_eq!(
            choose_route(&facts),
            Ok(RoutePlan {
                route: BuildRoute::DebianBuildStd,
                install_debian_packages: false
            })
        );
    }

    #[test]
    fn route_installs_debian_packages_as_root() {
        let facts = ToolchainFacts {
            is_root: true,
            has_apt_get: true,
            ..Default::default()
        };
        assert_eq!(
            choose_route(&facts),
            Ok(RoutePlan {
                route: BuildRoute::DebianBuildStd,
                install_debian_packages: true
            })
        );
    }

    #[test]
    fn route_explains_what_to_install() {
        for facts in [
            ToolchainFacts::default(),
            ToolchainFacts {
                has_apt_get: true,
                ..Default::default()
            },
            ToolchainFacts {
                is_root: true,
                ..Default::default()
            },
        ] {
            let message = choose_route(&facts).unwrap_err();
            assert!(
                message.contains("rustup target add wasm32-unknown-unknown"),
                "{message}"
            );
            assert!(message
                .contains("apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22"));
        }
    }

    #[test]
    fn debian_command_uses_build_std_and_profile_config() {
        let command = cargo_build_command(
            OsStr::new(DEBIAN_CARGO),
            Path::new("/p/Cargo.toml"),
            Path::new("/t"),
            true,
            BuildRoute::DebianBuildStd,
            &os(&[("PATH", "/usr/bin")]),
        );
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "-Zbuild-std=std,panic_abort",
            "--release",
            "wasm32-unknown-unknown",
            "profile.release.panic=\"abort\"",
            "profile.release.opt-level=\"s\"",
            "profile.release.lto=true",
            "profile.release.codegen-units=1",
            "profile.release.strip=true",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "{expected} missing in {args:?}"
            );
        }
        let envs: Vec<(String, Option<String>)> = command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&("RUSTC".into(), Some(DEBIAN_RUSTC.into()))));
        assert!(envs.contains(&("RUSTC_BOOTSTRAP".into(), Some("1".into()))));
    }

    #[test]
    fn rustup_command_has_no_build_std_and_dev_only_aborts() {
        let command = cargo_build_command(
            OsStr::new("cargo"),
            Path::new("/p/Cargo.toml"),
            Path::new("/t"),
            false,
            BuildRoute::RustupTarget,
            &[],
        );
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.iter().any(|a| a.starts_with("-Zbuild-std")));
        assert!(!args.iter().any(|a| a == "--release"));
        let configs: Vec<&String> = args.iter().filter(|a| a.starts_with("profile.")).collect();
        assert_eq!(configs, ["profile.dev.panic=\"abort\""]);
        assert!(command.get_envs().all(|(k, _)| k != "RUSTC"));
    }

    #[test]
    fn artifact_is_found_among_cargo_messages() {
        let stdout = br#"{"reason":"compiler-artifact","manifest_path":"/dep/Cargo.toml","filenames":["/t/libdep.rlib"]}
not json
{"reason":"compiler-artifact","manifest_path":"/p/Cargo.toml","target":{"kind":["cdylib"]},"filenames":["/t/wasm32-unknown-unknown/release/my_plugin.wasm"]}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            find_wasm_artifact(stdout, Path::new("/p/Cargo.toml")).unwrap(),
            PathBuf::from("/t/wasm32-unknown-unknown/release/my_plugin.wasm")
        );
        assert_eq!(
            component_path_for(Path::new("/t/my_plugin.wasm")),
            PathBuf::from("/t/my_plugin.component.wasm")
        );
    }

    #[test]
    fn missing_cdylib_is_explained() {
        let stdout = br#"{"reason":"compiler-artifact","manifest_path":"/p/Cargo.toml","filenames":["/t/libp.rlib"]}"#;
        let err = find_wasm_artifact(stdout, Path::new("/p/Cargo.toml")).unwrap_err();
        assert!(err.to_string().contains("crate-type"), "{err}");
        let err = find_wasm_artifact(b"", Path::new("/p/Cargo.toml")).unwrap_err();
        assert!(err.to_string().contains("no artifact"), "{err}");
    }

    #[test]
    fn installed_target_is_recognized_by_its_libstd() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!dir_has_libstd(&dir.path().join("missing")));
        assert!(!dir_has_libstd(dir.path()));
        std::fs::write(dir.path().join("libcore-1234.rlib"), b"").expect("write");
        assert!(!dir_has_libstd(dir.path()));
        std::fs::write(dir.path().join("libstd-1234.rlib"), b"").expect("write");
        assert!(dir_has_libstd(dir.path()));
    }

    #[test]
    fn default_options_build_release() {
        assert!(BuildOptions::default().release);
    }

    /// Builds the misbehaving test plugin for real and loads the component in wasmtime.
    /// Slow on a cold target dir (std is compiled once, about a minute), hence ignored:
    /// `cargo test -p switchboard --lib plugin_build -- --ignored`.
    #[test]
    #[ignore = "runs a real wasm build"]
    fn builds_the_misbehave_plugin_end_to_end() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/misbehave");
        let mut lines = Vec::new();
        let built = build_plugin(&crate_dir, &BuildOptions::default(), &mut |line| {
            lines.push(line.to_owned())
        })
        .expect("build");
        assert!(lines[0].starts_with("building with the"), "{lines:?}");
        assert!(built
            .component_path
            .ends_with("wasm32-unknown-unknown/release/switchboard_test_misbehave.component.wasm"));
        assert!(built.size_bytes < 1 << 20, "{} bytes", built.size_bytes);
        let bytes = std::fs::read(&built.component_path).expect("read component");
        assert_eq!(bytes.len() as u64, built.size_bytes);
        let engine = wasmtime::Engine::default();
        wasmtime::component::Component::from_binary(&engine, &bytes).expect("wasmtime loads it");
    }
}
