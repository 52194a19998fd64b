//! `payment_audit`: logs every payment event and forwards payments whose amount is
//! above the configured `threshold` to the configured `forward_url`.
//!
//! Config (`[plugin.payment_audit] config = { ... }`):
//! - `threshold`: amount above which a payment is forwarded (default `1000`);
//! - `forward_url`: where to forward (default `http://127.0.0.1:9000/audit`).
//!
//! The amount is read at `/data/amount` (an Optum-style envelope) or `/amount`
//! (a bare payment body).

use hookrouter_plugin_sdk::prelude::*;

const DEFAULT_URL: &str = "http://127.0.0.1:9000/audit";

fn handle(event: Event) -> Result<Vec<Action>> {
    let body = event.data_value()?;
    let payment = body.get("data").filter(|d| d.is_object()).unwrap_or(&body);
    let Some(amount) = payment.get("amount").and_then(amount_of) else {
        log::warn!(
            "{} event {} has no amount; not audited",
            event.event_type,
            event.id
        );
        return Ok(vec![]);
    };
    let threshold = match config("threshold") {
        Some(t) => t
            .trim()
            .parse::<f64>()
            .map_err(|e| Error::msg(format!("config threshold {t:?} is not a number: {e}")))?,
        None => 1000.0,
    };
    log::info!(
        "{} {} amount {amount} (threshold {threshold})",
        event.event_type,
        body.get("id").and_then(Value::as_str).unwrap_or(&event.id)
    );
    if amount <= threshold {
        return Ok(vec![]);
    }
    let url = config("forward_url").unwrap_or_else(|| DEFAULT_URL.to_string());
    Ok(vec![
        Action::forward(url)
            .header("x-hookrouter-event", event.id.as_str())
            .json(&json!({
                "event_id": event.id,
                "event_type": event.event_type,
                "source": event.source,
                "amount": amount,
                "threshold": threshold,
                "payment": payment,
            })),
    ])
}

/// Amounts arrive as numbers or as decimal strings.
fn amount_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(amount: Value) -> Event {
        TestEvent::new("payment_loading_requested")
            .data(&json!({ "id": "pay_1", "type": "payment_loading_requested", "data": { "amount": amount } }))
            .build()
    }

    #[test]
    fn forwards_above_threshold_only() {
        let _config =
            testing::set_config([("threshold", "100"), ("forward_url", "http://a.test/x")]);
        assert!(handle(payment(json!(50))).unwrap().is_empty());
        let actions = handle(payment(json!("250.5"))).unwrap();
        let Action::Forward { url, body, .. } = &actions[0] else {
            panic!("not a forward")
        };
        assert_eq!(url, "http://a.test/x");
        assert!(body.contains("250.5"));
    }

    #[test]
    fn bad_threshold_is_an_error() {
        let _config = testing::set_config([("threshold", "lots")]);
        assert!(handle(payment(json!(5))).is_err());
    }
}
