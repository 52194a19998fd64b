//! Dead letters: `GET /admin/dead[?plugin=&source=&type=&older_than=&limit=]`,
//! `GET /admin/dead/{id}`, replay (`POST /admin/dead/{id}/replay`, any
//! delivery or forward that is not pending) and purge (`DELETE
//! /admin/dead/{id}`), one or many (`POST /admin/dead/replay`, `POST
//! /admin/dead/purge`, whose body names the entries: `{"ids": [...]}`, the
//! filters of `/admin/events`, `{"older_than": "7d"}`, or nothing for all).
//!
//! Owns: turning a request into a [`Selection`], and the answers' shapes.
//! Never: decides what a replay or purge does to the rows; the store does.

use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::api::{self, Answer, ApiError};
use super::events::{filter_param, raw_json};
use super::mask::forward_target;
use super::routes::Call;
use crate::store::{DeadEntry, DeadFilter, DeadId, EventFilter, Purged, Selection};

/// The most entries one listing returns.
const MAX_LIMIT: usize = 10_000;

/// The largest request body read (a list of ids).
const MAX_BODY: usize = 1 << 20;

fn dead_id(s: &str) -> Result<DeadId, ApiError> {
    s.parse()
        .map_err(|e: crate::store::BadId| ApiError::bad(e.to_string()))
}

fn older_than(d: &str) -> Result<SystemTime, ApiError> {
    let d: Duration = humantime::parse_duration(d)
        .map_err(|e| ApiError::bad(format!("invalid older_than {d:?}: {e}")))?;
    Ok(SystemTime::now()
        .checked_sub(d)
        .unwrap_or(SystemTime::UNIX_EPOCH))
}

/// A dead entry as admin views show it (the forward's target cut).
fn shown(mut e: DeadEntry) -> DeadEntry {
    e.target = e.target.as_deref().map(forward_target);
    e
}

#[derive(Serialize)]
struct DeadList {
    dead: Vec<DeadEntry>,
}

pub(super) async fn list(c: Call<'_>) -> Answer {
    let mut filter = DeadFilter::default();
    let mut limit = 1000;
    for (k, v) in form_urlencoded::parse(c.query().as_bytes()) {
        if v.is_empty() {
            continue;
        }
        let v = v.into_owned();
        match k.as_ref() {
            "plugin" => filter.plugin = Some(v),
            "source" => filter.source = Some(v),
            "type" => filter.event_type = Some(v),
            "older_than" => filter.older_than = Some(older_than(&v)?),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad(format!("limit={v:?} is not a number from 1 to {MAX_LIMIT}"))
                    })?
            }
            other => return Err(ApiError::bad(format!("unknown query parameter {other:?}"))),
        }
    }
    let dead = c.admin.store.dead(&filter, limit).await?;
    api::json(&DeadList {
        dead: dead.into_iter().map(shown).collect(),
    })
}

#[derive(Serialize)]
struct DeadDetail {
    #[serde(flatten)]
    entry: DeadEntry,
    received_at: String,
    /// The event's body, verbatim.
    data: Box<RawValue>,
}

pub(super) async fn show(c: Call<'_>) -> Answer {
    let id = dead_id(c.param(0))?;
    let Some((entry, event)) = c.admin.store.dead_entry(id).await? else {
        return Err(ApiError::NotFound(format!("no dead entry {id}")));
    };
    api::json(&DeadDetail {
        entry: shown(entry),
        received_at: event.received_at_rfc3339(),
        data: raw_json(&event.body),
    })
}

#[derive(Serialize)]
struct Replayed {
    replayed: usize,
}

#[derive(Serialize)]
struct PurgedAnswer {
    purged: Purged,
}

pub(super) async fn replay_one(c: Call<'_>) -> Answer {
    let id = dead_id(c.param(0))?;
    match c.admin.store.replay(Selection::Ids(vec![id])).await? {
        0 => Err(ApiError::NotFound(format!(
            "no entry {id} to replay (it does not exist, or is pending already)"
        ))),
        n => api::json(&Replayed { replayed: n }),
    }
}

pub(super) async fn purge_one(c: Call<'_>) -> Answer {
    let id = dead_id(c.param(0))?;
    let purged = c.admin.store.purge(Selection::Ids(vec![id])).await?;
    if purged.entries == 0 {
        return Err(ApiError::NotFound(format!("no dead entry {id}")));
    }
    api::json(&PurgedAnswer { purged })
}

/// The body of a bulk replay or purge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    ids: Option<Vec<String>>,
    older_than: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    status: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl Bulk {
    fn selection(self) -> Result<Selection, ApiError> {
        let mut filter = EventFilter::default();
        let mut filtered = false;
        for (key, value) in [
            ("source", &self.source),
            ("type", &self.event_type),
            ("status", &self.status),
            ("q", &self.q),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                filter_param(&mut filter, key, v)?;
                filtered = true;
            }
        }
        match (self.ids, self.older_than, filtered) {
            (Some(_), Some(_), _) | (Some(_), _, true) => Err(ApiError::bad(
                "give \"ids\", or filters, or \"older_than\": not several",
            )),
            (None, Some(_), true) => Err(ApiError::bad(
                "\"older_than\" does not combine with event filters (use \"until\")",
            )),
            (Some(ids), None, false) if ids.is_empty() => Err(ApiError::bad("\"ids\" is empty")),
            (Some(ids), None, false) => ids
                .iter()
                .map(|id| dead_id(id))
                .collect::<Result<_, _>>()
                .map(Selection::Ids),
            (None, _, true) => Ok(Selection::Events(filter)),
            (None, older, false) => Ok(Selection::Dead {
                older_than: older.as_deref().map(older_than).transpose()?,
            }),
        }
    }
}

/// Reads the bulk body (an empty body selects every dead entry).
async fn bulk(body: Incoming) -> Result<Selection, ApiError> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad(format!("cannot read body: {e}")))?
        .to_bytes();
    let bulk: Bulk = if bytes.iter().all(u8::is_ascii_whitespace) {
        Bulk::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    bulk.selection()
}

pub(super) async fn replay_many(c: Call<'_>) -> Answer {
    let store = c.admin.store.clone();
    let selection = bulk(c.req.into_body()).await?;
    let replayed = store.replay(selection).await?;
    api::json(&Replayed { replayed })
}

pub(super) async fn purge_many(c: Call<'_>) -> Answer {
    let store = c.admin.store.clone();
    let selection = bulk(c.req.into_body()).await?;
    let purged = store.purge(selection).await?;
    api::json(&PurgedAnswer { purged })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(json: &str) -> Result<Selection, String> {
        let bulk: Bulk = serde_json::from_str(json).map_err(|e| e.to_string())?;
        bulk.selection().map_err(|e| e.to_string())
    }

    #[test]
    fn a_bulk_body_selects_ids_filters_an_age_or_everything() {
        assert!(matches!(
            sel("{}"),
            Ok(Selection::Dead { older_than: None })
        ));
        assert!(matches!(
            sel(r#"{"older_than":"1h"}"#),
            Ok(Selection::Dead {
                older_than: Some(_)
            })
        ));
        match sel(r#"{"ids":["d-1","o-2"]}"#) {
            Ok(Selection::Ids(ids)) => assert_eq!(ids.len(), 2),
            other => panic!("{other:?}"),
        }
        match sel(r#"{"source":"optum","type":"t","q":"PAY-1","since":"2026-01-01T00:00:00Z"}"#) {
            Ok(Selection::Events(f)) => {
                assert_eq!(f.source.as_deref(), Some("optum"));
                assert_eq!(f.event_type.as_deref(), Some("t"));
                assert_eq!(f.q.as_deref(), Some("PAY-1"));
                assert!(f.since.is_some());
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            r#"{"ids":["d-1"],"source":"x"}"#,
            r#"{"ids":["d-1"],"older_than":"1h"}"#,
            r#"{"older_than":"1h","type":"x"}"#,
            r#"{"ids":[]}"#,
            r#"{"ids":["x-1"]}"#,
            r#"{"status":"sleeping"}"#,
            r#"{"since":"yesterday"}"#,
            r#"{"older_than":"soon"}"#,
            r#"{"q":"!!!"}"#,
            r#"{"plugin":"p"}"#,
        ] {
            assert!(sel(bad).is_err(), "{bad}");
        }
    }
}
