//! How `hookrouter events` prints for people: a table of events, one event
//! with its timeline of attempts, and the lines of `events tail`.
//!
//! Owns: layout only, from the admin API's JSON shapes.
//! Never: fetches anything; the commands hand it what they read.

use std::io::Write;
use std::time::SystemTime;

use serde_json::Value;

/// Columns padded to their widest cell.
pub(super) fn table<const N: usize>(
    out: &mut impl Write,
    head: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < N {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            } else {
                l.push_str(c);
            }
        }
        writeln!(out, "{}", l.trim_end())
    };
    line(out, head.to_vec())?;
    for r in rows {
        line(out, r.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// An event view as a person reads it.
pub(super) fn readable(v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut o = String::new();
    o.push_str(&format!(
        "event {}  {} {}  {}\nreceived {}  hops {}\n",
        s(&v["id"]),
        s(&v["source"]),
        s(&v["type"]),
        s(&v["status"]),
        s(&v["received_at"]),
        s(&v["hops"])
    ));
    if !v["parent_id"].is_null() {
        o.push_str(&format!("emitted by {}\n", s(&v["parent_id"])));
    }
    for c in v["children"].as_array().into_iter().flatten() {
        o.push_str(&format!("emitted {}\n", s(c)));
    }
    o.push_str("\nheaders\n");
    for h in v["headers"].as_array().into_iter().flatten() {
        o.push_str(&format!("  {}: {}\n", s(&h[0]), s(&h[1])));
    }
    o.push_str("\nbody\n");
    let body = match &v["data"] {
        Value::Null => s(&v["body"]),
        data => serde_json::to_string_pretty(data).unwrap_or_default(),
    };
    for l in body.lines() {
        o.push_str(&format!("  {l}\n"));
    }
    let attempts = |o: &mut String, a: &Value| {
        for t in a["history"].as_array().into_iter().flatten() {
            let mut line = format!(
                "    #{} {} {} {} ms",
                s(&t["attempt"]),
                s(&t["at"]),
                s(&t["outcome"]),
                s(&t["duration_ms"])
            );
            if !t["status"].is_null() {
                line.push_str(&format!("  HTTP {}", s(&t["status"])));
            }
            if !t["version"].is_null() {
                line.push_str(&format!("  version {}", s(&t["version"])));
            }
            if !t["error"].is_null() {
                line.push_str(&format!("  {}", s(&t["error"])));
            }
            o.push_str(&line);
            o.push('\n');
        }
    };
    for d in v["deliveries"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "\ndelivery {}  {}  {}  attempts {}\n",
            s(&d["id"]),
            s(&d["plugin"]),
            s(&d["state"]),
            s(&d["attempts"])
        ));
        attempts(&mut o, d);
    }
    for f in v["forwards"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "\nforward {}  {} -> {}  {}  attempts {}\n",
            s(&f["id"]),
            s(&f["plugin"]),
            s(&f["url"]),
            s(&f["state"]),
            s(&f["attempts"])
        ));
        attempts(&mut o, f);
    }
    o
}

/// Prints one server-sent event (comments are skipped).
pub(super) fn message(block: &str, json: bool) -> anyhow::Result<()> {
    let mut event = "message";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e;
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push_str(d);
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let v: Value = serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
    if json {
        writeln!(out, "{v}")?;
        return Ok(out.flush()?);
    }
    let s = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let time = now.get(11..19).unwrap_or(&now);
    let line = match event {
        "event" => format!(
            "{time}  event     {}  {} {}  {}{}",
            s(&v["id"]),
            s(&v["source"]),
            s(&v["event_type"]),
            s(&v["status"]),
            match v["parent_id"].as_str() {
                Some(p) => format!("  (emitted by {p})"),
                None => String::new(),
            }
        ),
        "delivery" => format!(
            "{time}  delivery  {}  {} #{} {}  {} ms  -> {}{}",
            s(&v["id"]),
            s(&v["plugin"]),
            s(&v["attempt"]),
            s(&v["outcome"]),
            s(&v["duration_ms"]),
            s(&v["state"]),
            match v["error"].as_str() {
                Some(e) => format!("  {e}"),
                None => String::new(),
            }
        ),
        "forward" => format!(
            "{time}  forward   {}  {} #{} {}  {}  {} ms  -> {}{}",
            s(&v["id"]),
            s(&v["target"]),
            s(&v["attempt"]),
            s(&v["status"]),
            s(&v["plugin"]),
            s(&v["duration_ms"]),
            s(&v["state"]),
            match v["error"].as_str() {
                Some(e) => format!("  {e}"),
                None => String::new(),
            }
        ),
        "lagged" => format!(
            "{time}  (missed {} messages: this terminal fell behind)",
            s(&v["missed"])
        ),
        other => format!("{time}  {other}  {data}"),
    };
    writeln!(out, "{line}")?;
    Ok(out.flush()?)
}
