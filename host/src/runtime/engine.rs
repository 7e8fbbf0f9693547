//! The wasmtime engine: pooling allocator, epoch interruption and the epoch ticker.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the ticker advances the engine's epoch. Each tick is a point where a running plugin
/// yields to tokio and has its deadline checked, so it bounds both unfairness and overrun.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizes of the engine, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Plugin instances that may be alive at once (one per in-flight call).
    pub max_instances: u32,
    /// Upper bound of any per-installation memory cap, in bytes.
    pub max_memory_bytes: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_memory_bytes: 256 << 20,
        }
    }
}

/// Builds the engine, with the pooling allocator when the machine allows it (it reserves
/// virtual address space up front, which some sandboxes refuse) and on-demand allocation
/// otherwise. Returns whether pooling is in use.
pub fn build_engine(limits: &EngineLimits) -> anyhow::Result<(Engine, bool)> {
    match Engine::new(&base_config(limits, true)) {
        Ok(engine) => Ok((engine, true)),
        Err(pooling_error) => {
            tracing::warn!(error = %pooling_error, "pooling allocator unavailable; using on-demand allocation");
            let engine = Engine::new(&base_config(limits, false))
                .map_err(|e| anyhow::anyhow!("creating the wasm engine: {e:#}"))?;
            Ok((engine, false))
        }
    }
}

fn base_config(limits: &EngineLimits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    config.memory_init_cow(true);
    config.max_wasm_stack(512 << 10);
    if pooling {
        let slots = limits.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots);
        // A component made by wit-component holds the plugin's module plus small shim modules.
        pool.total_core_instances(slots * 4);
        pool.total_tables(slots * 4);
        pool.total_memories(slots);
        pool.total_stacks(slots);
        pool.max_memories_per_component(1);
        pool.max_memory_size(limits.max_memory_bytes);
        // Keep the first pages of each slot resident: reused slots then skip page faults. Every
        // slot ever used keeps this much for the life of the process, so it is small: at 1 MiB,
        // 88 concurrent hostile calls left the process 115 MiB larger for good (256 slots:
        // 256 MiB); at 128 KiB the bound is 32 MiB.
        pool.linear_memory_keep_resident(128 << 10);
        pool.table_keep_resident(16 << 10);
        // A returned fiber stack keeps its touched pages otherwise: up to the stack size per
        // slot, for the life of the process (a hostile plugin's deep recursion touches it all).
        config.async_stack_zeroing(true);
        pool.async_stack_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread, until the engine is
/// dropped.
pub fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("switchboard-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        // Without the ticker no deadline fires; the wall-clock timeout around calls still does.
        tracing::error!(%error, "could not start the epoch ticker thread");
    }
}
