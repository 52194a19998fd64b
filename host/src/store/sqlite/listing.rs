//! Listing and searching events, newest first, a page at a time.
//!
//! Owns: the `WHERE` terms of an [`EventFilter`] (shared with replay and
//! purge selections), and choosing how a listing is read: along an index of
//! `events`, or driven by the full-text index `search.events_fts` (a file of
//! its own, attached to every reader: see `search`) when words are searched.
//! Never: writes; every change goes through the writer thread.

use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::ops::parse_event_id;
use super::read::{rfc3339, status_of};
use crate::event::EventId;
use crate::store::{EventFilter, EventSummary, Page};

/// `WHERE` terms and their parameters for an event filter, over `events e`.
/// The words of `q` become a probe of the search index for each row (fine for
/// the few rows of a replay or purge selection; listings read the index itself).
pub(super) fn event_filter_sql(f: &EventFilter) -> (Vec<String>, Vec<Value>) {
    let (mut terms, mut params) = plain_filter_sql(f);
    let words = f.words();
    if !words.is_empty() {
        params.push(Value::Text(fts_query(&words)));
        terms.push(format!(
            "EXISTS (SELECT 1 FROM search.events_fts f WHERE f.events_fts MATCH ?{} AND f.rowid = e.rowid)",
            params.len()
        ));
    }
    (terms, params)
}

/// The terms of every filter but `q`.
fn plain_filter_sql(f: &EventFilter) -> (Vec<String>, Vec<Value>) {
    let mut terms = Vec::new();
    let mut params = Vec::new();
    let mut term = |sql: &str, v: Value| {
        params.push(v);
        terms.push(sql.replace('?', &format!("?{}", params.len())));
    };
    if let Some(s) = &f.source {
        term("e.source = ?", Value::Text(s.clone()));
    }
    if let Some(t) = &f.event_type {
        term("e.event_type = ?", Value::Text(t.clone()));
    }
    if let Some(s) = f.status {
        term("e.status = ?", Value::Text(s.as_str().into()));
    }
    if let Some(t) = f.since {
        term("e.id >= ?", Value::Text(EventId::floor_at(t).to_string()));
    }
    if let Some(t) = f.until {
        term("e.id < ?", Value::Text(EventId::floor_at(t).to_string()));
    }
    (terms, params)
}

/// An FTS5 query that requires every word: each one quoted (a word the
/// tokenizer splits further becomes a phrase of its parts).
fn fts_query(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn where_clause(terms: &[String]) -> String {
    if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    }
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: parse_event_id(r, 0)?,
        source: r.get(1)?,
        event_type: r.get(2)?,
        external_id: r.get(3)?,
        received_at: rfc3339(r.get(4)?),
        status: status_of(&r.get::<_, String>(5)?),
        parent_id: r.get::<_, Option<String>>(6)?.and_then(|p| p.parse().ok()),
        hops: r.get(7)?,
    })
}

const SUMMARY_COLUMNS: &str =
    "e.id, e.source, e.event_type, e.external_id, e.received_at, e.status, e.parent_id, e.hops";

/// Search hits counted (at most) before choosing how to read a listing.
#[cfg(not(test))]
const FEW_HITS: i64 = 20_000;
/// Small in unit tests, so the conformance suite's listings take both ways.
#[cfg(test)]
const FEW_HITS: i64 = 3;

/// How far the order events were stored in may lag their ids' order (an
/// event waits for the writer far less than this): the bound that lets a
/// time filter limit which part of the search index is read.
const STORE_LAG: Duration = Duration::from_secs(60);

/// A page of events, newest first. Without search words, read along the
/// index of the filter (or of ids). With words, their hits in the search index
/// are counted up to [`FEW_HITS`]: fewer, and each hit's row is read and the
/// page sorted by id. More (a common word): if the other filters pass fewer
/// events than that, their rows are checked against the hits; else the index
/// is read newest first, each hit's row checked against the filters, until a
/// page is full (ordered as events were stored: their id order but for events
/// stored within the same few milliseconds).
pub(super) fn events(
    c: &Connection,
    filter: &EventFilter,
    page: Page,
) -> rusqlite::Result<Vec<EventSummary>> {
    let words = filter.words();
    if words.is_empty() {
        return listing(c, filter, page);
    }
    let query = fts_query(&words);
    let hits: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM search.events_fts WHERE events_fts MATCH ?1 LIMIT ?2)",
        )?
        .query_row(rusqlite::params![query, FEW_HITS], |r| r.get(0))?;
    if hits < FEW_HITS {
        return few_hits(c, filter, &query, page);
    }
    if let Some(found) = few_rows(c, filter, &query, page)? {
        return Ok(found);
    }
    many_hits(c, filter, &query, page)
}

/// A common word, and other filters that fewer than [`FEW_HITS`] events
/// pass: the word's hits are read as a list of rowids (the index reads a
/// million in about 30 ms), and the filters' rows checked against it, newest
/// first. `None` when the filters pass more events than that.
fn few_rows(
    c: &Connection,
    filter: &EventFilter,
    query: &str,
    page: Page,
) -> rusqlite::Result<Option<Vec<EventSummary>>> {
    let (mut terms, mut params) = plain_filter_sql(filter);
    if terms.is_empty() {
        return Ok(None);
    }
    let rows: i64 = c
        .prepare_cached(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM events e {} LIMIT {FEW_HITS})",
            where_clause(&terms)
        ))?
        .query_row(params_from_iter(params.iter()), |r| r.get(0))?;
    if rows >= FEW_HITS {
        return Ok(None);
    }
    let hits: Vec<i64> = c
        .prepare_cached(
            "SELECT rowid FROM search.events_fts WHERE events_fts MATCH ?1 ORDER BY rowid",
        )?
        .query_map([query], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(before) = page.before {
        params.push(Value::Text(before.to_string()));
        terms.push(format!("e.id < ?{}", params.len()));
    }
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS}, e.rowid FROM events e {} ORDER BY e.id DESC",
        where_clause(&terms)
    ))?;
    let mut found = Vec::new();
    let mut rows = stmt.query(params_from_iter(params))?;
    while let Some(r) = rows.next()? {
        if hits.binary_search(&r.get::<_, i64>(8)?).is_ok() {
            found.push(summary_row(r)?);
            if found.len() == page.limit {
                break;
            }
        }
    }
    Ok(Some(found))
}

/// Along the index of the filter (or of ids), newest first.
fn listing(
    c: &Connection,
    filter: &EventFilter,
    page: Page,
) -> rusqlite::Result<Vec<EventSummary>> {
    let (mut terms, mut params) = event_filter_sql(filter);
    if let Some(before) = page.before {
        params.push(Value::Text(before.to_string()));
        terms.push(format!("e.id < ?{}", params.len()));
    }
    params.push(Value::Integer(page.limit as i64));
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM events e {} ORDER BY e.id DESC LIMIT ?{}",
        where_clause(&terms),
        params.len()
    );
    c.prepare_cached(&sql)?
        .query_map(params_from_iter(params), summary_row)?
        .collect()
}

/// Every hit's row, filtered, sorted by id (fewer than [`FEW_HITS`]).
fn few_hits(
    c: &Connection,
    filter: &EventFilter,
    query: &str,
    page: Page,
) -> rusqlite::Result<Vec<EventSummary>> {
    let (mut terms, mut params) = plain_filter_sql(filter);
    params.push(Value::Text(query.to_string()));
    let q = params.len();
    if let Some(before) = page.before {
        params.push(Value::Text(before.to_string()));
        terms.push(format!("e.id < ?{}", params.len()));
    }
    params.push(Value::Integer(page.limit as i64));
    // CROSS JOIN keeps the hits as the outer loop.
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}
         FROM (SELECT rowid AS hit FROM search.events_fts WHERE events_fts MATCH ?{q}) h
         CROSS JOIN events e ON e.rowid = h.hit
         {} ORDER BY e.id DESC LIMIT ?{}",
        where_clause(&terms),
        params.len()
    );
    c.prepare_cached(&sql)?
        .query_map(params_from_iter(params), summary_row)?
        .collect()
}

/// The search index read newest first (a common word).
fn many_hits(
    c: &Connection,
    filter: &EventFilter,
    query: &str,
    page: Page,
) -> rusqlite::Result<Vec<EventSummary>> {
    let (mut terms, mut params) = plain_filter_sql(filter);
    params.push(Value::Text(query.to_string()));
    terms.push(format!("f.events_fts MATCH ?{}", params.len()));
    // The part of the index a time filter allows, widened by STORE_LAG; the
    // exact bounds on ids stay in `terms`.
    let place = |n: usize| {
        format!(
            "coalesce((SELECT rowid FROM events WHERE id >= ?{n} ORDER BY id LIMIT 1),
                      (SELECT max(rowid) + 1 FROM events), 0)"
        )
    };
    if let Some(t) = filter.until {
        params.push(Value::Text(EventId::floor_at(t + STORE_LAG).to_string()));
        terms.push(format!("f.rowid < {}", place(params.len())));
    }
    if let Some(t) = filter.since {
        let from = t.checked_sub(STORE_LAG).unwrap_or(std::time::UNIX_EPOCH);
        params.push(Value::Text(EventId::floor_at(from).to_string()));
        terms.push(format!("f.rowid >= {}", place(params.len())));
    }
    if let Some(before) = page.before {
        // The cursor's place in the index; if it was deleted since, the place
        // just after the newest event older than it.
        params.push(Value::Text(before.to_string()));
        let n = params.len();
        terms.push(format!(
            "f.rowid < coalesce((SELECT rowid FROM events WHERE id = ?{n}),
                                (SELECT rowid + 1 FROM events WHERE id < ?{n} ORDER BY id DESC LIMIT 1),
                                0)"
        ));
    }
    params.push(Value::Integer(page.limit as i64));
    // CROSS JOIN keeps the index as the outer loop.
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM search.events_fts f CROSS JOIN events e ON e.rowid = f.rowid
         {} ORDER BY f.rowid DESC LIMIT ?{}",
        where_clause(&terms),
        params.len()
    );
    c.prepare_cached(&sql)?
        .query_map(params_from_iter(params), summary_row)?
        .collect()
}
