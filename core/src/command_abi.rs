//! The command-module ABI's stdout: zero or more JSON lines, each one action.
//!
//! Owns: the line format (`{"action":"forward","url","headers","body"}` and
//! `{"action":"emit","type","data"}`), blank lines, the cap on actions, and the
//! wording of every refusal (`stdout line 3: no "url"`).
//! Never: runs a plugin or knows which plugin wrote the output; the runtime
//! wraps these plain error strings in its own error type.

use serde_json::{Map, Value};

use crate::event::Action;

/// Parses stdout: blank lines are skipped, every other line is one action; at
/// most `max_actions` of them.
pub fn parse_actions(stdout: &[u8], max_actions: usize) -> Result<Vec<Action>, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "stdout is not UTF-8".to_owned())?;
    let mut actions = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if actions.len() == max_actions {
            return Err(format!("more than {max_actions} actions"));
        }
        let action = parse_line(line).map_err(|e| format!("stdout line {}: {e}", n + 1))?;
        actions.push(action);
    }
    Ok(actions)
}

/// One line of stdout as an action.
pub fn parse_line(line: &str) -> Result<Action, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".into());
    };
    let take_str = |obj: &mut Map<String, Value>, key: &str| match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{key}\" is not a string")),
        None => Err(format!("no \"{key}\"")),
    };
    match take_str(&mut obj, "action")?.as_str() {
        "forward" => {
            let url = take_str(&mut obj, "url")?;
            let headers = match obj.remove("headers") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Object(map)) => map
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k, s)),
                        _ => Err(format!("header \"{k}\" is not a string")),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("\"headers\" is not an object".into()),
            };
            let body = match obj.remove("body") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s,
                Some(json) => json.to_string(),
            };
            Ok(Action::Forward { url, headers, body })
        }
        "emit" => {
            let event_type = take_str(&mut obj, "type")?;
            let data = obj.remove("data").ok_or("no \"data\"")?;
            Ok(Action::Emit {
                event_type,
                data: data.to_string(),
            })
        }
        other => Err(format!(
            "unknown action {other:?} (expected forward or emit)"
        )),
    }
}
