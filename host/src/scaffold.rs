//! `switchboard plugin new`: writes a plugin crate that builds, passes its own tests and
//! passes `plugin test` as written, for an author to start from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::manifest::PluginKind;

/// One file of a template: its path in the new crate and its text, with `__NAME__`,
/// `__CRATE__`, `__LIB__` and `__SDK_PATH__` still to fill in.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

macro_rules! template {
    ($kind:literal, $($path:literal => $file:literal),+ $(,)?) => {
        &[$(TemplateFile {
            path: $path,
            text: include_str!(concat!("../templates/", $kind, "/", $file)),
        }),+]
    };
}

const SOCIAL: &[TemplateFile] = template!("social",
    "Cargo.toml" => "Cargo.toml.tmpl",
    ".gitignore" => "gitignore.tmpl",
    "README.md" => "README.md.tmpl",
    "src/lib.rs" => "src/lib.rs.tmpl",
    "src/manifest.rs" => "src/manifest.rs.tmpl",
    "src/account.rs" => "src/account.rs.tmpl",
    "src/api.rs" => "src/api.rs.tmpl",
    "src/events.rs" => "src/events.rs.tmpl",
    "fixtures/0001.json" => "fixtures/0001.json",
    "fixtures/0002.json" => "fixtures/0002.json",
    "fixtures/0003.json" => "fixtures/0003.json",
    "fixtures/0004.json" => "fixtures/0004.json",
    "webhooks/delivery.json" => "webhooks/delivery.json",
    "webhooks/handshake.json" => "webhooks/handshake.json",
);

const HELPDESK: &[TemplateFile] = template!("helpdesk",
    "Cargo.toml" => "Cargo.toml.tmpl",
    ".gitignore" => "gitignore.tmpl",
    "README.md" => "README.md.tmpl",
    "src/lib.rs" => "src/lib.rs.tmpl",
    "src/manifest.rs" => "src/manifest.rs.tmpl",
    "src/account.rs" => "src/account.rs.tmpl",
    "src/api.rs" => "src/api.rs.tmpl",
    "src/changes.rs" => "src/changes.rs.tmpl",
    "fixtures/0001.json" => "fixtures/0001.json",
    "fixtures/0002.json" => "fixtures/0002.json",
    "fixtures/0003.json" => "fixtures/0003.json",
    "fixtures/0004.json" => "fixtures/0004.json",
    "fixtures/0005.json" => "fixtures/0005.json",
    "fixtures/0006.json" => "fixtures/0006.json",
    "fixtures/0007.json" => "fixtures/0007.json",
    "fixtures/0008.json" => "fixtures/0008.json",
    "fixtures/0009.json" => "fixtures/0009.json",
    "fixtures/0010.json" => "fixtures/0010.json",
    "fixtures/0011.json" => "fixtures/0011.json",
    "fixtures/0012.json" => "fixtures/0012.json",
    "webhooks/delivery.json" => "webhooks/delivery.json",
);

/// What `plugin new` was asked for.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin id, also the crate's name after `switchboard-plugin-`.
    pub name: String,
    pub kind: PluginKind,
    /// Where to write the crate (created; must not exist or be empty).
    pub dir: PathBuf,
    /// The SDK crate the new crate depends on by path.
    pub sdk_path: PathBuf,
}

/// The SDK next to the sources this binary was built from, when it is still there.
pub fn default_sdk_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    path.join("Cargo.toml")
        .is_file()
        .then(|| path.canonicalize().unwrap_or(path))
}

/// A plugin name: lower-case letters, digits and `-`, starting with a letter, at most 48.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "plugin name `{name}` must be 1-48 characters of a-z, 0-9 and `-`, starting with a \
             letter and not ending with `-` (it becomes the plugin id and part of the crate name)"
        );
    }
    Ok(())
}

/// The crate's package name.
pub fn crate_name(name: &str) -> String {
    format!("switchboard-plugin-{name}")
}

/// Writes the crate; returns the files written.
pub fn write(request: &NewPlugin) -> anyhow::Result<Vec<PathBuf>> {
    check_name(&request.name)?;
    let dir = &request.dir;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and cannot be read", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty; pick another --dir or remove it",
                dir.display()
            );
        }
    }
    if !request.sdk_path.join("Cargo.toml").is_file() {
        bail!(
            "{} is not the Switchboard plugin SDK (no Cargo.toml there); pass --sdk-path with \
             the `plugin-sdk` directory of a Switchboard checkout",
            request.sdk_path.display()
        );
    }
    let sdk_path = request
        .sdk_path
        .canonicalize()
        .unwrap_or_else(|_| request.sdk_path.clone());
    let sdk = sdk_path
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", sdk_path.display()))?;
    // TOML basic strings: a Windows path's backslashes must be escaped.
    let sdk = sdk.replace('\\', "\\\\").replace('"', "\\\"");
    let crate_name = crate_name(&request.name);
    let files = match request.kind {
        PluginKind::Social => SOCIAL,
        PluginKind::Helpdesk => HELPDESK,
    };
    let mut written = Vec::new();
    for file in files {
        let text = file
            .text
            .replace("__SDK_PATH__", &sdk)
            .replace("__CRATE__", &crate_name)
            .replace("__LIB__", &crate_name.replace('-', "_"))
            .replace("__NAME__", &request.name);
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["acme", "acme-chat", "x2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "2acme",
            "acme_",
            "acme-",
            "a b",
            &"a".repeat(49),
        ] {
            let error = check_name(bad).expect_err(bad).to_string();
            assert!(error.contains("a-z"), "{error}");
        }
    }

    #[test]
    fn a_crate_is_written_with_its_placeholders_filled() {
        let sdk = default_sdk_path().expect("the SDK of this checkout");
        for kind in [PluginKind::Social, PluginKind::Helpdesk] {
            let dir = tempfile::tempdir().expect("dir");
            let target = dir.path().join("acme");
            let written = write(&NewPlugin {
                name: "acme".into(),
                kind,
                dir: target.clone(),
                sdk_path: sdk.clone(),
            })
            .expect("written");
            assert!(written.len() >= 5);
            for path in &written {
                let text = std::fs::read_to_string(path).expect("read");
                for placeholder in ["__NAME__", "__CRATE__", "__LIB__", "__SDK_PATH__"] {
                    assert!(
                        !text.contains(placeholder),
                        "{} keeps {placeholder}",
                        path.display()
                    );
                }
            }
            let cargo = std::fs::read_to_string(target.join("Cargo.toml")).expect("read");
            assert!(cargo.contains("[workspace]") && cargo.contains("switchboard-plugin-acme"));
            assert!(cargo.contains(sdk.to_str().expect("utf-8")), "{cargo}");
            let again = write(&NewPlugin {
                name: "acme".into(),
                kind,
                dir: target,
                sdk_path: sdk.clone(),
            })
            .expect_err("not empty");
            assert!(again.to_string().contains("not empty"), "{again}");
        }
    }
}
