//! Loading checks a component against the contract and says what is wrong.

use switchboard::runtime::{CacheOutcome, LoadError};
use switchboard_testkit as kit;

async fn load_error(wasm: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    match runtime.load(wasm).await {
        Ok(_) => panic!("expected the component to be refused"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                matches!(
                    e,
                    LoadError::NotAComponent(_) | LoadError::ContractMismatch { .. }
                ),
                "{message}"
            );
            message
        }
    }
}

#[tokio::test]
async fn refuses_garbage_and_core_modules() {
    assert!(load_error(b"not wasm at all")
        .await
        .contains("not a wasm file"));
    let core = wat::parse_str("(module)").expect("wat");
    assert!(load_error(&core)
        .await
        .contains("core wasm module, not a component"));
}

#[tokio::test]
async fn refuses_a_component_without_a_connector_export() {
    let empty = wat::parse_str("(component)").expect("wat");
    let message = load_error(&empty).await;
    assert!(
        message.contains("switchboard:connector/social-connector@0.2.0"),
        "{message}"
    );
    assert!(message.contains("helpdesk-connector"), "{message}");
}

#[tokio::test]
async fn refuses_a_component_built_for_another_contract_version() {
    let other = wat::parse_str(
        r#"(component
            (instance $i)
            (export "switchboard:connector/social-connector@9.0.0" (instance $i)))"#,
    )
    .expect("wat");
    let message = load_error(&other).await;
    assert!(message.contains("social-connector@9.0.0"), "{message}");
}

#[tokio::test]
async fn refuses_wasi_imports() {
    let wasi = wat::parse_str(r#"(component (import "wasi:filesystem/types@0.2.0" (instance)))"#)
        .expect("wat");
    let message = load_error(&wasi).await;
    assert!(message.contains("wasi:filesystem/types@0.2.0"), "{message}");
    assert!(message.contains("no WASI"), "{message}");
}

#[tokio::test]
async fn refuses_an_export_with_missing_functions() {
    let partial = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $inst (export "describe" (func $f)))
            (export "switchboard:connector/social-connector@0.2.0" (instance $inst)))"#,
    )
    .expect("wat");
    let message = load_error(&partial).await;
    assert!(message.contains("social"), "{message}");
}

#[tokio::test]
async fn compiled_components_are_cached_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = kit::component("tests/plugins/misbehave");
    let first = kit::runtime(dir.path());
    let (_, outcome) = first.load(&wasm).await.expect("load");
    assert_eq!(outcome, CacheOutcome::Compiled);
    drop(first);
    let second = kit::runtime(dir.path());
    let (plugin, outcome) = second.load(&wasm).await.expect("load");
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(plugin.manifest().id, "test.misbehave");
}
