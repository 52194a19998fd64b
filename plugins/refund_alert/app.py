"""refund_alert: a hookrouter component plugin written in Python (componentize-py).

On a refunded or returned payment it emits a `refund_alert` event and, when the
config entry `slack_url` is set, forwards a Slack-style message to it.

A payment counts as refunded when the event type is `payment_refunded` or
`payment_returned`, or when its `status` says so. The payment is read from the
body's `data` object (an Optum-style envelope) or from the body itself.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Action_Emit, Action_Forward, Emitted, Event, ForwardRequest

REFUND_TYPES = {"payment_refunded", "payment_returned"}
REFUND_STATUSES = {"refunded", "returned"}


class WitWorld(wit_world.WitWorld):
    def handle(self, event: Event) -> list:
        try:
            body = json.loads(event.data)
        except ValueError as e:
            raise Err(f"event {event.id} is not JSON: {e}")
        if not isinstance(body, dict):
            return []
        payment = body.get("data") if isinstance(body.get("data"), dict) else body
        status = str(payment.get("status", "")).lower()
        if event.event_type not in REFUND_TYPES and status not in REFUND_STATUSES:
            return []

        payment_id = payment.get("id") or body.get("id") or event.id
        amount = payment.get("amount")
        reason = payment.get("reason") or status or event.event_type
        host.log(host.Level.INFO, f"refund of {amount} for payment {payment_id} ({reason})")

        alert = {"payment_id": payment_id, "amount": amount, "reason": reason, "event_id": event.id}
        actions = [Action_Emit(Emitted("refund_alert", json.dumps(alert)))]
        slack_url = host.config("slack_url")
        if slack_url:
            text = f":warning: refund of {amount} for payment {payment_id} ({reason})"
            message = {"text": text}
            channel = host.config("channel")
            if channel:
                message["channel"] = channel
            headers = [("content-type", "application/json")]
            actions.append(Action_Forward(ForwardRequest(slack_url, headers, json.dumps(message))))
        return actions
