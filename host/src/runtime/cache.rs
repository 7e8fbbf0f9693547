//! Ahead-of-time compiled components on disk.
//!
//! A component is compiled once, when it is first seen (normally at install), and the native
//! code is kept under the data dir, keyed by the wasm's sha256 and the engine's compatibility
//! hash. A restart, or another host process sharing the directory, maps the file instead of
//! compiling again. Only files this host wrote are ever loaded: the directory is private.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

/// Feeds `Hash` output into SHA-256, so the key is stable across processes (unlike
/// `DefaultHasher`, whose seed and algorithm are unspecified).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Whether a load came from the cache or compiled the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Self { dir, engine_key })
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled form of `wasm` (whose digest is `sha256`), compiling and storing it
    /// on a miss. A cache file that fails to load is replaced.
    pub fn load(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let path = self.path_for(sha256);
        if path.exists() {
            // SAFETY: the file was produced by `precompile_component` of an engine with the same
            // compatibility hash (it is in the name), in a directory only this host writes.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unusable compiled component")
                }
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(|e| anyhow::anyhow!("compiling the component: {e:#}"))?;
        // Unique per write: two loads of the same new component may race, in one process or
        // in several sharing the directory; each writes its own file and renames it into place.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{write}", std::process::id()));
        std::fs::write(&tmp, &compiled).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("moving {} into place", path.display()))?;
        // SAFETY: as above; we just wrote these bytes from `precompile_component`.
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| anyhow::anyhow!("loading the compiled component: {e:#}"))?;
        Ok((component, CacheOutcome::Compiled))
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Hex sha256 of a plugin's bytes: its identity in the store and the cache.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
