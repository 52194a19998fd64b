//! `GET /admin/events` (the listing, its filters and cursor) and
//! `GET /admin/events/{id}` (one event with everything that happened to it).
//!
//! Owns: parsing the listing's query (shared with bulk replay and purge,
//! which take the same filters), and the event view: headers masked, the body
//! verbatim, deliveries and forwards with every attempt, forward URLs cut to
//! what may be shown.
//! Never: interprets event data; the body is passed on as received.

use serde::Serialize;
use serde_json::value::RawValue;

use super::api::{self, Answer, ApiError};
use super::mask::{forward_target, mask_headers};
use super::routes::Call;
use crate::config::Config;
use crate::store::{
    DeliveryRecord, EventDetail, EventFilter, EventId, EventStatus, EventSummary, ForwardRecord,
    Page, search_words,
};

/// Events per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Reads one filter parameter into `filter`; `Ok(false)` when `key` is not a
/// filter's name.
pub(super) fn filter_param(filter: &mut EventFilter, key: &str, v: &str) -> Result<bool, ApiError> {
    let time = |v: &str| {
        humantime::parse_rfc3339_weak(v)
            .map_err(|e| ApiError::bad(format!("{key}={v:?} is not an RFC 3339 time: {e}")))
    };
    match key {
        "source" => filter.source = Some(v.to_string()),
        "type" => filter.event_type = Some(v.to_string()),
        "status" => {
            filter.status = Some(EventStatus::parse(v).ok_or_else(|| {
                ApiError::bad(format!(
                    "status={v:?} is not one of dead, pending, done, unrouted"
                ))
            })?)
        }
        "q" => {
            if !v.trim().is_empty() && search_words(v).is_empty() {
                return Err(ApiError::bad(format!(
                    "q={v:?} has no words to search for (letters or digits)"
                )));
            }
            filter.q = Some(v.to_string())
        }
        "since" => filter.since = Some(time(v)?),
        "until" => filter.until = Some(time(v)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// `?source=&type=&status=&q=&since=&until=&cursor=&limit=`; empty values are
/// left out (a form's blank field filters nothing).
pub(super) fn listing_query(query: &str) -> Result<(EventFilter, Page), ApiError> {
    let mut filter = EventFilter::default();
    let mut page = Page {
        before: None,
        limit: DEFAULT_LIMIT,
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "cursor" => {
                page.before = Some(
                    v.parse()
                        .map_err(|e| ApiError::bad(format!("cursor: {e}")))?,
                )
            }
            "limit" => {
                page.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad(format!("limit={v:?} is not a number from 1 to {MAX_LIMIT}"))
                    })?
            }
            key => {
                if !filter_param(&mut filter, key, &v)? {
                    return Err(ApiError::bad(format!("unknown query parameter {key:?}")));
                }
            }
        }
    }
    Ok((filter, page))
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<EventSummary>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<EventId>,
}

pub(super) async fn list(c: Call<'_>) -> Answer {
    let (filter, page) = listing_query(c.query())?;
    let events = c.admin.store.events(&filter, page).await?;
    let next_cursor = if events.len() == page.limit {
        events.last().map(|e| e.id)
    } else {
        None
    };
    api::json(&EventsPage {
        events,
        next_cursor,
    })
}

/// An event as admin views show it.
#[derive(Serialize)]
pub(crate) struct EventView {
    id: EventId,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    external_id: Option<String>,
    received_at: String,
    hops: u32,
    status: EventStatus,
    parent_id: Option<EventId>,
    /// Events its deliveries emitted.
    children: Vec<EventId>,
    /// Names lower-case, in arrival order; credentials and signatures masked.
    headers: Vec<(String, String)>,
    /// The body exactly as received, as text.
    body: String,
    /// The body as JSON, verbatim (`null` if it is not JSON).
    data: Box<RawValue>,
    deliveries: Vec<DeliveryRecord>,
    /// Each `url` cut to scheme, host, port and first path segment.
    forwards: Vec<ForwardRecord>,
}

/// `body` verbatim as a JSON value, or `null` when it is not JSON.
pub(super) fn raw_json(body: &str) -> Box<RawValue> {
    RawValue::from_string(body.to_string())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

pub(super) async fn show(c: Call<'_>) -> Answer {
    let id: EventId = c
        .param(0)
        .parse()
        .map_err(|e: crate::event::BadEventId| ApiError::bad(e.to_string()))?;
    let Some(d) = c.admin.store.event(id).await? else {
        return Err(ApiError::NotFound(format!("no event {id}")));
    };
    let live = c.admin.live.load();
    api::json(&event_view(d, &live.config))
}

/// The view of one event: headers masked by its source's rules in `config`,
/// forward URLs cut (also what `hookrouter events show` prints).
pub(crate) fn event_view(d: EventDetail, config: &Config) -> EventView {
    let e = d.event;
    let headers = mask_headers(&e.headers, config.source(&e.source));
    EventView {
        id: e.id,
        received_at: e.received_at_rfc3339(),
        data: raw_json(&e.body),
        body: e.body,
        source: e.source,
        event_type: e.event_type,
        external_id: e.external_id,
        hops: e.hops,
        status: d.status,
        parent_id: d.parent_id,
        children: d.children,
        headers,
        deliveries: d.deliveries,
        forwards: d
            .forwards
            .into_iter()
            .map(|mut record| {
                record.url = forward_target(&record.url);
                record
            })
            .collect(),
    }
}
