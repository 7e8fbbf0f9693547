//! The admin commands: the admin API's operations for scripts, run against the hub directly on
//! the configured database (no HTTP, no token; whoever can read the database is an admin).
//!
//! `--json` prints what the API would answer; otherwise a table for lists and `key: value`
//! lines for single records.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::settings::SettingsArgs;
use super::Context;
use crate::hub::{Hub, HubError, LinkSettings, NewInstallation, NewLink};

/// `--json`, for every admin command group.
#[derive(Debug, Args)]
struct Output {
    /// Print JSON (as the admin API answers) instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

// ----- installations ---------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct InstallationArgs {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: InstallationCommand,
}

#[derive(Debug, Subcommand)]
enum InstallationCommand {
    /// Create an installation of an installed plugin, with its settings.
    Create {
        /// The installation's id: lower-case letters, digits and dashes; part of its webhook URL.
        id: String,
        /// The plugin to run (its active version).
        #[arg(long, value_name = "PLUGIN_ID")]
        plugin: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Create it disabled: no polling, webhooks refused, until `installation enable`.
        #[arg(long)]
        disabled: bool,
    },
    /// List installations.
    List,
    /// Show one installation (secret settings masked).
    Show {
        id: String,
    },
    /// Check the connection with the saved settings, without saving anything; exits 1 if it fails.
    Test {
        id: String,
    },
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
    /// Connect an OAuth2 installation without a browser (JWT bearer or client credentials).
    OauthConnect {
        id: String,
        /// `jwt-bearer` or `client-credentials`; picked from the plugin's flows without it.
        #[arg(long)]
        flow: Option<String>,
    },
    /// Start the browser flow: prints the provider's URL for an admin to open. The provider
    /// sends the browser back to `--redirect-uri`, the running hub's /oauth/callback.
    OauthStart {
        id: String,
        #[arg(long, value_name = "URL")]
        redirect_uri: String,
    },
}

pub async fn installation(ctx: &Context, args: InstallationArgs) -> anyhow::Result<ExitCode> {
    let hub = ctx.hub().await?;
    let json = args.output.json;
    match args.command {
        InstallationCommand::Create {
            id,
            plugin,
            settings,
            disabled,
        } => {
            let settings = settings.read()?;
            let new = NewInstallation {
                id,
                plugin_id: plugin,
                settings,
                enabled: Some(!disabled),
                deadline_ms: None,
            };
            let view = hub.create_installation(new).await.map_err(hub_error)?;
            print_one(json, &view)?;
        }
        InstallationCommand::List => {
            let views = hub.list_installations().await.map_err(hub_error)?;
            print_list(
                json,
                &views,
                &[
                    "id",
                    "plugin_id",
                    "plugin_version",
                    "kind",
                    "enabled",
                    "webhook_path",
                ],
            )?;
        }
        InstallationCommand::Show { id } => {
            print_one(json, &hub.get_installation(&id).await.map_err(hub_error)?)?
        }
        InstallationCommand::Test { id } => {
            let report = hub.test_installation(&id).await.map_err(hub_error)?;
            print_one(json, &report)?;
            if !report.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        InstallationCommand::Enable { id } => print_one(
            json,
            &hub.set_installation_enabled(&id, true)
                .await
                .map_err(hub_error)?,
        )?,
        InstallationCommand::Disable { id } => print_one(
            json,
            &hub.set_installation_enabled(&id, false)
                .await
                .map_err(hub_error)?,
        )?,
        InstallationCommand::OauthConnect { id, flow } => print_one(
            json,
            &hub.oauth_connect(&id, flow.as_deref())
                .await
                .map_err(hub_error)?,
        )?,
        InstallationCommand::OauthStart { id, redirect_uri } => {
            let url = hub
                .oauth_start(&id, &redirect_uri)
                .await
                .map_err(hub_error)?;
            done(
                json,
                &serde_json::json!({ "authorize_url": url, "redirect_uri": redirect_uri }),
                &url,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ----- links -----------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: LinkCommand,
}

#[derive(Debug, Subcommand)]
enum LinkCommand {
    /// Make a social installation's conversations into tickets of a helpdesk installation.
    Create {
        id: String,
        /// The social installation (e.g. a Telegram bot).
        #[arg(long, value_name = "INSTALLATION")]
        social: String,
        /// The helpdesk installation (e.g. a Zendesk account).
        #[arg(long, value_name = "INSTALLATION")]
        helpdesk: String,
        /// Reopen the last solved ticket of a chat instead of opening a new one.
        #[arg(long)]
        reopen_solved: bool,
        /// A tag added to every ticket; repeatable.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Priority of new tickets (low, normal, high, urgent).
        #[arg(long)]
        priority: Option<String>,
    },
    List,
    Delete {
        id: String,
    },
}

pub async fn link(ctx: &Context, args: LinkArgs) -> anyhow::Result<ExitCode> {
    let hub = ctx.hub().await?;
    let json = args.output.json;
    match args.command {
        LinkCommand::Create {
            id,
            social,
            helpdesk,
            reopen_solved,
            tags,
            priority,
        } => {
            let new = NewLink {
                id,
                social_installation: social,
                helpdesk_installation: helpdesk,
                settings: LinkSettings {
                    reopen_solved,
                    tags,
                    priority,
                    ..LinkSettings::default()
                },
            };
            print_one(json, &hub.create_link(new).await.map_err(hub_error)?)?;
        }
        LinkCommand::List => {
            let views = hub.list_links().await.map_err(hub_error)?;
            print_list(
                json,
                &views,
                &[
                    "id",
                    "social_installation",
                    "helpdesk_installation",
                    "settings",
                ],
            )?;
        }
        LinkCommand::Delete { id } => {
            hub.delete_link(&id).await.map_err(hub_error)?;
            done(
                json,
                &serde_json::json!({ "deleted": id }),
                &format!("deleted link {id}"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ----- jobs ------------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    List,
    /// Run a job now and print its run; exits 1 if the run failed.
    Run {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Change a job's cron schedule: 5 crontab fields, or 6 with seconds first.
    Schedule {
        id: String,
        schedule: String,
        /// IANA time zone of the schedule, e.g. Europe/Paris (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
    },
}

pub async fn job(ctx: &Context, args: JobArgs) -> anyhow::Result<ExitCode> {
    let hub = ctx.hub().await?;
    let json = args.output.json;
    match args.command {
        JobCommand::List => {
            let views = hub.list_jobs().await.map_err(hub_error)?;
            print_list(
                json,
                &views,
                &[
                    "id",
                    "installation_id",
                    "stream",
                    "schedule",
                    "time_zone",
                    "paused",
                    "next_run_at",
                ],
            )?;
        }
        JobCommand::Run { id } => {
            let run = hub.run_job_now(&id).await.map_err(hub_error)?;
            print_one(json, &run)?;
            // A failed run is recorded with an error; scripts see it in the exit code.
            let value = serde_json::to_value(&run)?;
            if value.get("error").is_some_and(|e| !e.is_null()) {
                return Ok(ExitCode::FAILURE);
            }
        }
        JobCommand::Pause { id } => print_one(
            json,
            &hub.set_job_paused(&id, true).await.map_err(hub_error)?,
        )?,
        JobCommand::Resume { id } => print_one(
            json,
            &hub.set_job_paused(&id, false).await.map_err(hub_error)?,
        )?,
        JobCommand::Schedule {
            id,
            schedule,
            time_zone,
        } => print_one(
            json,
            &hub.set_job_schedule(&id, &schedule, time_zone.as_deref())
                .await
                .map_err(hub_error)?,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

// ----- dead letters ----------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct DeadLetterArgs {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: DeadLetterCommand,
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    List,
    /// Put a dead letter back in the outbox with its attempts reset.
    Retry {
        id: i64,
    },
    /// Drop a dead letter for good.
    Discard {
        id: i64,
    },
}

pub async fn dead_letter(ctx: &Context, args: DeadLetterArgs) -> anyhow::Result<ExitCode> {
    let hub = ctx.hub().await?;
    let json = args.output.json;
    match args.command {
        DeadLetterCommand::List => {
            let views = hub.list_dead_letters().await.map_err(hub_error)?;
            print_list(
                json,
                &views,
                &[
                    "id",
                    "kind",
                    "installation_id",
                    "conversation_id",
                    "attempts",
                    "last_error",
                    "created_at",
                    "unconfirmed_since",
                ],
            )?;
        }
        DeadLetterCommand::Retry { id } => {
            hub.retry_dead_letter(id).await.map_err(hub_error)?;
            done(
                json,
                &serde_json::json!({ "id": id, "state": "pending" }),
                &format!("dead letter {id} is pending again"),
            )?;
        }
        DeadLetterCommand::Discard { id } => {
            hub.discard_dead_letter(id).await.map_err(hub_error)?;
            done(
                json,
                &serde_json::json!({ "discarded": id }),
                &format!("discarded dead letter {id}"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ----- conversations ---------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct ConversationArgs {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: ConversationCommand,
}

#[derive(Debug, Subcommand)]
enum ConversationCommand {
    List,
    /// Show a conversation with its tickets and messages.
    Show {
        id: String,
    },
}

pub async fn conversation(ctx: &Context, args: ConversationArgs) -> anyhow::Result<ExitCode> {
    let hub: Hub = ctx.hub().await?;
    let json = args.output.json;
    match args.command {
        ConversationCommand::List => {
            let views = hub.list_conversations().await.map_err(hub_error)?;
            print_list(
                json,
                &views,
                &[
                    "id",
                    "social_installation_id",
                    "channel",
                    "thread_id",
                    "last_inbound_at",
                    "updated_at",
                ],
            )?;
        }
        ConversationCommand::Show { id } => {
            print_one(json, &hub.get_conversation(&id).await.map_err(hub_error)?)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ----- output ----------------------------------------------------------------------------------

/// Hub errors already say what is wrong; the kind is noise on a terminal.
fn hub_error(error: HubError) -> anyhow::Error {
    match error {
        HubError::Internal(error) => error,
        other => anyhow::anyhow!("{other}"),
    }
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn done(json: bool, value: &Value, text: &str) -> anyhow::Result<()> {
    if json {
        print_json(value)
    } else {
        println!("{text}");
        Ok(())
    }
}

/// A record as `key: value` lines; a list of records inside it becomes a table under its key.
fn print_one<T: Serialize>(json: bool, value: &T) -> anyhow::Result<()> {
    if json {
        return print_json(value);
    }
    let value = serde_json::to_value(value)?;
    let Value::Object(fields) = &value else {
        println!("{}", cell(&value));
        return Ok(());
    };
    let width = fields.keys().map(String::len).max().unwrap_or(0);
    let mut tables = Vec::new();
    for (key, field) in fields {
        match field {
            Value::Array(items) if items.iter().any(Value::is_object) => tables.push((key, items)),
            _ => println!("{key:<width$}  {}", cell(field)),
        }
    }
    for (key, items) in tables {
        println!("\n{key}:");
        print!("{}", table(items, &[]));
    }
    Ok(())
}

/// Records as a table with `columns` (those present), or their scalar fields when none are.
fn print_list<T: Serialize>(json: bool, values: &[T], columns: &[&str]) -> anyhow::Result<()> {
    if json {
        return print_json(values);
    }
    let items: Vec<Value> = values
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        println!("(none)");
        return Ok(());
    }
    print!("{}", table(&items, columns));
    Ok(())
}

fn table(items: &[Value], columns: &[&str]) -> String {
    let present = |key: &str| items.iter().any(|item| item.get(key).is_some());
    let mut keys: Vec<String> = columns
        .iter()
        .filter(|c| present(c))
        .map(|c| c.to_string())
        .collect();
    if keys.is_empty() {
        // Unknown shape: every scalar field of the first record (in key order).
        if let Some(Value::Object(first)) = items.first() {
            keys = first
                .iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, _)| k.clone())
                .collect();
        }
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            keys.iter()
                .map(|k| truncate(&cell(item.get(k).unwrap_or(&Value::Null)), 60))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([k.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(
        keys.iter()
            .map(|k| k.to_uppercase())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A value as one line of text: strings bare, absent as `-`, structures as compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.replace('\n', "⏎"),
        other => other.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_known_columns_and_fall_back_to_scalars() {
        let items = vec![
            serde_json::json!({"id": "tg", "enabled": true, "settings": {"k": "v"}}),
            serde_json::json!({"id": "zendesk-main", "enabled": false, "settings": {}}),
        ];
        let text = table(&items, &["id", "enabled", "missing"]);
        assert_eq!(
            text,
            "ID            ENABLED\ntg            true\nzendesk-main  false\n"
        );
        let text = table(&items, &[]);
        assert!(text.starts_with("ENABLED  ID\n"), "{text}");
    }
}
