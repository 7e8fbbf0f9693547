//! The SDK carries its own copy of the contract (`plugin-sdk/wit/<version>/`), so that it builds
//! and packages outside this workspace. The workspace's `wit/` is the source of truth: every
//! version folder the SDK carries must equal the workspace's folder of the same name, file for
//! file. (This test is left out of the published package, which has no workspace around it.)
//!
//! To carry a new contract version, copy `wit/<version>` to `plugin-sdk/wit/<version>`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn sdk_wit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wit")
}

fn workspace_wit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")
}

/// The `.wit` files of a folder, by name, with their text.
fn wit_files(dir: &Path) -> BTreeMap<String, String> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "wit") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 file name")
                .to_string();
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            files.insert(name, text);
        }
    }
    files
}

/// The version folders (`v0.2`, ...) in a `wit/` folder.
fn versions(dir: &Path) -> Vec<String> {
    let mut versions: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
        .collect();
    versions.sort();
    versions
}

#[test]
fn every_carried_contract_version_equals_the_workspace_wit() {
    let carried = versions(&sdk_wit());
    assert!(
        carried.iter().any(|v| v == "v0.2"),
        "the SDK must carry wit/v0.2, which its bindings are generated from; it has {carried:?}"
    );
    for version in &carried {
        let ours = wit_files(&sdk_wit().join(version));
        let theirs = workspace_wit().join(version);
        assert!(
            theirs.is_dir(),
            "plugin-sdk/wit/{version} has no counterpart in the workspace's wit/"
        );
        let theirs = wit_files(&theirs);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "plugin-sdk/wit/{version} and wit/{version} hold different files"
        );
        for (name, text) in &ours {
            assert!(
                text == &theirs[name],
                "plugin-sdk/wit/{version}/{name} differs from wit/{version}/{name}: copy \
                 wit/{version} into plugin-sdk/wit/ again"
            );
        }
    }
}
