//! `hookrouter dead list|show ID|replay ID|replay --all`: works on the store file,
//! whether or not the router is running (a running router picks replays up
//! within its poll interval).

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::log_safe::Escaped;
use crate::store::{Reader, ReplayTarget, replay_offline};

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
}

pub(super) fn run(config: &Config, cmd: DeadCommand) -> anyhow::Result<ExitCode> {
    let path = &config.store.path;
    match cmd {
        DeadCommand::List => {
            let dead = Reader::open(path)?.dead(10_000)?;
            if dead.is_empty() {
                println!("no dead entries");
            }
            for d in dead.into_iter().map(crate::admin::shown_dead) {
                let target = d
                    .target
                    .as_deref()
                    .map(|t| format!(" -> {t}"))
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
        DeadCommand::Show { id } => match Reader::open(path)?.dead_entry(&id)? {
            None => {
                eprintln!("no dead entry {id:?} in {}", path.display());
                Ok(ExitCode::FAILURE)
            }
            Some((entry, event)) => {
                let mut v = serde_json::to_value(crate::admin::shown_dead(entry))?;
                v["received_at"] = event.received_at_rfc3339().into();
                v["data"] = serde_json::from_str(&event.body).unwrap_or(serde_json::Value::Null);
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(ExitCode::SUCCESS)
            }
        },
        DeadCommand::Replay { id, all } => {
            let target = match (id, all) {
                (_, true) => ReplayTarget::All,
                (Some(id), false) => ReplayTarget::One(id),
                (None, false) => anyhow::bail!("name an entry (d-N or o-N) or pass --all"),
            };
            let one = matches!(target, ReplayTarget::One(_));
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "replaying {bar:40} {pos}/{len} dead entries",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let n = replay_offline(path, &target, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            if one && n == 0 {
                eprintln!("no dead entry to replay by that id in {}", path.display());
                return Ok(ExitCode::FAILURE);
            }
            println!("replayed {n} dead entr{}", if n == 1 { "y" } else { "ies" });
            Ok(ExitCode::SUCCESS)
        }
    }
}
