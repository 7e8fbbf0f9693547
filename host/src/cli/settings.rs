//! Installation settings on the command line. A value given as `-s KEY=VALUE` is visible to
//! every local user in the process list, so secrets can come from a file or standard input.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// A setting as KEY=VALUE; repeatable. The value shows in the process list: give
    /// secrets with --setting-file or --settings-file instead.
    #[arg(long = "setting", short = 's', value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// A JSON file with an object of string settings; `-` reads it from standard input.
    #[arg(long, value_name = "FILE")]
    settings_file: Option<PathBuf>,
    /// One setting whose value is the content of FILE (a trailing newline dropped); `-`
    /// reads it from standard input. Repeatable.
    #[arg(long = "setting-file", value_name = "KEY=FILE")]
    setting_files: Vec<String>,
}

impl SettingsArgs {
    /// The settings: the JSON file first, then each `--setting-file`, then each `-s` over them.
    pub(crate) fn read(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut stdin_taken = false;
        let mut read_source = |path: &Path, what: &str| -> anyhow::Result<String> {
            if path == Path::new("-") {
                anyhow::ensure!(!stdin_taken, "{what}: standard input can be read only once");
                stdin_taken = true;
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .with_context(|| format!("{what}: reading standard input"))?;
                Ok(text)
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("{what}: reading {}", path.display()))
            }
        };
        let mut settings = BTreeMap::new();
        if let Some(path) = &self.settings_file {
            let text = read_source(path, "--settings-file")?;
            let parsed: BTreeMap<String, String> =
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{}: expected a JSON object of string settings",
                        path.display()
                    )
                })?;
            settings.extend(parsed);
        }
        for pair in &self.setting_files {
            let (key, path) = split_pair("--setting-file", pair)?;
            let value = read_source(Path::new(path), &format!("--setting-file {key}"))?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            settings.insert(key.to_string(), value.to_string());
        }
        for pair in &self.settings {
            // Never echo the pair: its value may be a secret.
            let (key, value) = split_pair("--setting", pair)?;
            settings.insert(key.to_string(), value.to_string());
        }
        Ok(settings)
    }
}

/// `KEY=REST` split at the first `=`; errors name the key only, never the value.
fn split_pair<'a>(flag: &str, pair: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    let Some((key, value)) = pair.split_once('=') else {
        anyhow::bail!("{flag}: expected KEY=VALUE, got a value without `=`");
    };
    anyhow::ensure!(!key.is_empty(), "{flag}: the key before `=` is empty");
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_files_and_values_come_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("settings.json");
        std::fs::write(&json, r#"{"a": "1", "b": "2", "token": "old"}"#).expect("write");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").expect("write");
        let args = SettingsArgs {
            settings: vec!["b=3".into(), "c=x=y".into()],
            settings_file: Some(json),
            setting_files: vec![format!("token={}", token.display())],
        };
        let settings = args.read().expect("settings");
        assert_eq!(settings["a"], "1");
        assert_eq!(settings["b"], "3");
        assert_eq!(settings["c"], "x=y", "only the first `=` splits");
        assert_eq!(
            settings["token"], "s3cret",
            "from the file, newline dropped"
        );
    }

    #[test]
    fn malformed_pairs_are_refused_without_echoing_the_value() {
        for bad in ["novalue-secret", "=secret"] {
            let args = SettingsArgs {
                settings: vec![bad.into()],
                ..SettingsArgs::default()
            };
            let error = args.read().expect_err(bad).to_string();
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
