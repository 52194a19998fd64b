//! `hookrouter dead list|show ID|replay ID|replay --all|purge [--older-than D] [--yes]`:
//! through a running router's admin API, or on the store itself when no router runs.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::bail;
use clap::Subcommand;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::access::{self, Access, api_error};
use crate::admin::mask::forward_target;
use crate::config::Config;
use crate::log_safe::Escaped;
use crate::store::{DeadEntry, DeadFilter, DeadId, Selection};

#[derive(Debug, Subcommand)]
pub(super) enum DeadCommand {
    /// List dead deliveries (d-N) and forwards (o-N), newest first.
    List,
    /// Show one dead entry with its event.
    Show { id: String },
    /// Make dead entries pending again, with fresh attempts.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["id", "all"])))]
    Replay {
        /// The entry to replay (d-N or o-N).
        id: Option<String>,
        /// Replay every dead entry.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead entries for good (and their events, when nothing else of
    /// them is pending or dead).
    Purge {
        /// Only entries last attempted longer ago than this (e.g. "7d", "12h").
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub(super) fn run(config: &Config, cmd: DeadCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let access = access::open(config).await?;
        match cmd {
            DeadCommand::List => list(&access).await,
            DeadCommand::Show { id } => show(&access, &id).await,
            DeadCommand::Replay { id, all } => replay(&access, id, all).await,
            DeadCommand::Purge { older_than, yes } => purge(&access, older_than, yes).await,
        }
    })
}

fn parse_id(id: &str) -> anyhow::Result<DeadId> {
    Ok(id.parse::<DeadId>()?)
}

async fn list(access: &Access) -> anyhow::Result<ExitCode> {
    let dead: Vec<DeadEntry> = match access {
        Access::Direct(store) => store.dead(&DeadFilter::default(), 10_000).await?,
        Access::Api(api) => {
            let (status, body) = api.call(Method::GET, "/admin/dead", None).await?;
            if !status.is_success() {
                bail!("cannot list dead entries: {}", api_error(&body));
            }
            return print_list_json(&body);
        }
    };
    if dead.is_empty() {
        println!("no dead entries");
    }
    for d in dead {
        let target = d
            .target
            .as_deref()
            .map(|t| format!(" -> {}", forward_target(t)))
            .unwrap_or_default();
        // Event types and errors came from requests and plugins: escaped.
        println!(
            "{}\t{}\t{}\t{}{target}\tattempts={}\t{}",
            d.id,
            d.event_id,
            Escaped(&d.event_type),
            d.plugin,
            d.attempts,
            Escaped(d.last_error.as_deref().unwrap_or(""))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The same lines as [`list`], from the admin API's JSON (whose targets are
/// already cut to what may be shown).
fn print_list_json(body: &Value) -> anyhow::Result<ExitCode> {
    let dead = body["dead"].as_array().cloned().unwrap_or_default();
    if dead.is_empty() {
        println!("no dead entries");
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    for d in dead {
        let target = d["target"]
            .as_str()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}{target}\tattempts={}\t{}",
            s(&d["id"]),
            s(&d["event_id"]),
            Escaped(&s(&d["event_type"])),
            s(&d["plugin"]),
            d["attempts"],
            Escaped(&s(&d["last_error"]))
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(access: &Access, id: &str) -> anyhow::Result<ExitCode> {
    let found: Option<Value> = match access {
        Access::Direct(store) => {
            let dead = parse_id(id)?;
            store.dead_entry(dead).await?.map(|(mut entry, event)| {
                entry.target = entry.target.as_deref().map(forward_target);
                let mut v = serde_json::to_value(&entry).unwrap_or_default();
                v["received_at"] = event.received_at_rfc3339().into();
                v["data"] = serde_json::from_str(&event.body).unwrap_or(Value::Null);
                v
            })
        }
        Access::Api(api) => {
            parse_id(id)?;
            let (status, body) = api
                .call(Method::GET, &format!("/admin/dead/{id}"), None)
                .await?;
            match status {
                StatusCode::NOT_FOUND => None,
                s if s.is_success() => Some(body),
                _ => bail!("cannot show {id}: {}", api_error(&body)),
            }
        }
    };
    match found {
        None => {
            eprintln!("no dead entry {id:?}");
            Ok(ExitCode::FAILURE)
        }
        Some(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn replay(access: &Access, id: Option<String>, all: bool) -> anyhow::Result<ExitCode> {
    let one = match (&id, all) {
        (_, true) => None,
        (Some(id), false) => Some(parse_id(id)?),
        (None, false) => bail!("name an entry (d-N or o-N) or pass --all"),
    };
    let spinner = indicatif::ProgressBar::new_spinner().with_message("replaying dead entries");
    if all {
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    let n = match access {
        Access::Direct(store) => {
            let selection = match one {
                Some(id) => Selection::Ids(vec![id]),
                None => Selection::Dead { older_than: None },
            };
            store.replay(selection).await?
        }
        Access::Api(api) => {
            let path = match one {
                Some(id) => format!("/admin/dead/{id}/replay"),
                None => "/admin/dead/replay".to_string(),
            };
            let (status, body) = api.call(Method::POST, &path, Some(json!({}))).await?;
            match status {
                StatusCode::NOT_FOUND => 0,
                s if s.is_success() => body["replayed"].as_u64().unwrap_or(0) as usize,
                _ => bail!("cannot replay: {}", api_error(&body)),
            }
        }
    };
    spinner.finish_and_clear();
    if one.is_some() && n == 0 {
        eprintln!("no entry to replay by that id");
        return Ok(ExitCode::FAILURE);
    }
    println!("replayed {n} dead entr{}", if n == 1 { "y" } else { "ies" });
    Ok(ExitCode::SUCCESS)
}

async fn purge(
    access: &Access,
    older_than: Option<std::time::Duration>,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let what = match older_than {
        Some(d) => format!(
            "every dead entry last attempted more than {} ago",
            humantime::format_duration(d)
        ),
        None => "every dead entry".to_string(),
    };
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("purge deletes {what} for good; pass --yes to confirm when not on a terminal");
        }
        eprint!("Delete {what} for good, with their events? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing purged");
            return Ok(ExitCode::FAILURE);
        }
    }
    let (entries, events) = match access {
        Access::Direct(store) => {
            let p = store
                .purge(Selection::Dead {
                    older_than: older_than.map(|d| SystemTime::now() - d),
                })
                .await?;
            (p.entries as u64, p.events as u64)
        }
        Access::Api(api) => {
            let body = match older_than {
                Some(d) => json!({ "older_than": humantime::format_duration(d).to_string() }),
                None => json!({}),
            };
            let (status, body) = api
                .call(Method::POST, "/admin/dead/purge", Some(body))
                .await?;
            if !status.is_success() {
                bail!("cannot purge: {}", api_error(&body));
            }
            (
                body["purged"]["entries"].as_u64().unwrap_or(0),
                body["purged"]["events"].as_u64().unwrap_or(0),
            )
        }
    };
    println!(
        "purged {entries} dead entr{} and {events} event{}",
        if entries == 1 { "y" } else { "ies" },
        if events == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
