//! `hookrouter events list|show ID|tail`: finds events, shows one with its
//! deliveries, forwards and attempts, or follows new ones live (like `stripe
//! listen`). `list` and `show` go through a running router's admin API, or
//! the store itself when none runs; `tail` follows a running router's stream.
//!
//! Owns: the commands' arguments and what they print: a table (or readable
//! lines) on a terminal, JSON lines otherwise or with `--json`.
//! Never: builds views of its own: a direct read is shaped by the same code
//! as the admin API's answer (masked headers, cut forward URLs).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Subcommand;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::access::{self, Access, api_error};
use super::print;
use crate::config::Config;
use crate::store::{EventFilter, EventStatus, Page};

#[derive(Debug, Subcommand)]
pub(super) enum EventsCommand {
    /// List events, newest first.
    List(ListArgs),
    /// Show one event: headers (credentials and signatures masked), body,
    /// deliveries and forwards with every attempt.
    Show {
        /// The event's id.
        id: String,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow new events and their outcomes as they happen (needs a running router).
    Tail {
        /// Print each message as one JSON line (the default when not on a terminal).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct ListArgs {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events of this type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// dead, pending, done or unrouted.
    #[arg(long, value_parser = parse_status)]
    status: Option<EventStatus>,
    /// Received since: a duration ago ("15m", "2d") or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    since: Option<SystemTime>,
    /// Received before: a duration ago or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    until: Option<SystemTime>,
    /// Only events whose body holds every one of these words.
    #[arg(long, short)]
    q: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// JSON lines (the default when not on a terminal).
    #[arg(long)]
    json: bool,
}

fn parse_status(s: &str) -> Result<EventStatus, String> {
    EventStatus::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of dead, pending, done, unrouted"))
}

/// "15m" (that long ago) or an RFC 3339 time.
fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} is too long ago"));
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|_| format!("{s:?} is neither a duration (\"15m\", \"2d\") nor an RFC 3339 time"))
}

pub(super) fn run(config: &Config, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let access = access::open(config).await?;
        match cmd {
            EventsCommand::List(args) => list(&access, args).await,
            EventsCommand::Show { id, json } => show(config, &access, &id, json).await,
            EventsCommand::Tail { json } => tail(config, &access, json).await,
        }
    })
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

async fn list(access: &Access, args: ListArgs) -> anyhow::Result<ExitCode> {
    let filter = EventFilter {
        source: args.source,
        event_type: args.event_type,
        status: args.status,
        q: args.q,
        since: args.since,
        until: args.until,
    };
    let mut events: Vec<Value> = Vec::new();
    let mut before = None;
    while events.len() < args.limit {
        let limit = (args.limit - events.len()).min(1000);
        let (page, next) = match access {
            Access::Direct(store) => {
                let page = store.events(&filter, Page { before, limit }).await?;
                let next = (page.len() == limit)
                    .then(|| page.last().map(|e| e.id))
                    .flatten();
                (serde_json::to_value(page)?, next.map(|id| id.to_string()))
            }
            Access::Api(api) => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("source", filter.source.clone()),
                    ("type", filter.event_type.clone()),
                    ("status", filter.status.map(|s| s.as_str().to_string())),
                    ("q", filter.q.clone()),
                    ("since", filter.since.map(rfc3339)),
                    ("until", filter.until.map(rfc3339)),
                    ("cursor", before.map(|b| b.to_string())),
                    ("limit", Some(limit.to_string())),
                ] {
                    if let Some(v) = v {
                        q.append_pair(k, &v);
                    }
                }
                let (status, body) = api
                    .call(Method::GET, &format!("/admin/events?{}", q.finish()), None)
                    .await?;
                if !status.is_success() {
                    bail!("cannot list events: {}", api_error(&body));
                }
                let next = body["next_cursor"].as_str().map(str::to_string);
                (body["events"].clone(), next)
            }
        };
        events.extend(page.as_array().cloned().unwrap_or_default());
        match next.and_then(|n| n.parse().ok()) {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json || !std::io::stdout().is_terminal() {
        for e in &events {
            writeln!(out, "{e}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        writeln!(
            out,
            "no events (try `hookrouter send SOURCE --type T --data FILE`)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            [
                s(&e["received_at"]),
                s(&e["id"]),
                s(&e["source"]),
                s(&e["event_type"]),
                s(&e["status"]),
            ]
        })
        .collect();
    print::table(
        &mut out,
        &["RECEIVED", "ID", "SOURCE", "TYPE", "STATUS"],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn show(config: &Config, access: &Access, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let event_id: crate::event::EventId = id.parse()?;
    let found: Option<Value> = match access {
        Access::Direct(store) => match store.event(event_id).await? {
            None => None,
            Some(detail) => Some(serde_json::to_value(crate::admin::event_view(
                detail, config,
            ))?),
        },
        Access::Api(api) => {
            let (status, body) = api
                .call(Method::GET, &format!("/admin/events/{event_id}"), None)
                .await?;
            match status {
                StatusCode::NOT_FOUND => None,
                s if s.is_success() => Some(body),
                _ => bail!("cannot show {id}: {}", api_error(&body)),
            }
        }
    };
    let Some(v) = found else {
        eprintln!("no event {id}");
        return Ok(ExitCode::FAILURE);
    };
    let mut out = std::io::stdout().lock();
    if json || !std::io::stdout().is_terminal() {
        writeln!(out, "{v}")?;
    } else {
        write!(out, "{}", print::readable(&v))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn tail(config: &Config, access: &Access, json: bool) -> anyhow::Result<ExitCode> {
    let Access::Api(api) = access else {
        bail!(
            "events tail follows a running router, and none answers on {} (start one with `hookrouter serve`)",
            config.server.admin_listen
        );
    };
    let resp = api.stream("/admin/events/stream").await?;
    if !resp.status().is_success() {
        let body = resp.into_body().collect().await?.to_bytes();
        bail!(
            "cannot follow the event stream: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let json = json || !std::io::stdout().is_terminal();
    if !json {
        eprintln!("following events on this router (Ctrl-C to stop)");
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the event stream broke off")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            print::message(&String::from_utf8_lossy(&block), json)?;
        }
    }
    eprintln!("the router closed the stream");
    Ok(ExitCode::SUCCESS)
}
