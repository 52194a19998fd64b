//! Preset defaults against DESIGN.md, extractor syntax and lookups, envelopes.

use super::*;
use http::header::HeaderValue;

const OPTUM_SAMPLE: &str = include_str!("../../../../samples/optum/batch_created.json");

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn ex(spec: &str) -> Extractor {
    Extractor::parse(spec).unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn preset_names_round_trip_and_unknown_is_named() {
    for p in Preset::ALL {
        assert_eq!(p.name().parse::<Preset>(), Ok(p));
        assert_eq!(p.to_string(), p.name());
    }
    let err = "Optum".parse::<Preset>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown preset `Optum` (expected optum, github, stripe, standard-webhooks or cloudevents)"
    );
}

#[test]
fn preset_defaults_match_the_design() {
    let table = [
        (Preset::Optum, "/type", "/causationId", "hmac-sha256"),
        (
            Preset::Github,
            "header:x-github-event",
            "header:x-github-delivery",
            "hmac-sha256",
        ),
        (Preset::Stripe, "/type", "/id", "stripe"),
        (
            Preset::StandardWebhooks,
            "/type",
            "header:webhook-id",
            "standard-webhooks",
        ),
        (
            Preset::Cloudevents,
            "header:ce-type or /type",
            "header:ce-id or /id",
            "none",
        ),
    ];
    for (preset, type_from, id_from, scheme) in table {
        assert_eq!(preset.type_from().to_string(), type_from, "{preset}");
        assert_eq!(preset.id_from().to_string(), id_from, "{preset}");
        assert_eq!(preset.scheme().name(), scheme, "{preset}");
    }
    let header = |p: Preset| match p.scheme() {
        Scheme::HmacSha256 { header } => header,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        header(Preset::Optum),
        "X-Optum-Webhook-Callback-Hmac-Signature"
    );
    assert_eq!(header(Preset::Github), "X-Hub-Signature-256");
}

#[test]
fn optum_preset_reads_the_sample() {
    let body = OPTUM_SAMPLE.as_bytes();
    let none = HeaderMap::new();
    assert_eq!(
        Preset::Optum.type_from().extract(&none, body).as_deref(),
        Some("batch_created")
    );
    let id = Preset::Optum.id_from().extract(&none, body);
    assert_eq!(id.as_deref(), Some("0b6d5e1c-3f7a-4c2e-8a91-5d4f6e7a8b90"));
}

#[test]
fn github_preset_reads_headers_case_insensitively() {
    let h = headers(&[
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78"),
    ]);
    let body = json!({"action": "opened"}).to_string();
    let body = body.as_bytes();
    assert_eq!(
        Preset::Github.type_from().extract(&h, body).as_deref(),
        Some("push")
    );
    assert_eq!(
        Preset::Github.id_from().extract(&h, body).as_deref(),
        Some("72d3162e-cc78")
    );
    assert_eq!(
        Preset::Github.type_from().extract(&HeaderMap::new(), body),
        None
    );
}

#[test]
fn cloudevents_binary_mode_headers_win_then_structured_body() {
    let t = Preset::Cloudevents.type_from();
    let id = Preset::Cloudevents.id_from();
    // Binary mode: the body is the data, which may have its own `type`.
    let binary = headers(&[
        ("ce-type", "com.example.created"),
        ("ce-id", "A-1"),
        ("ce-specversion", "1.0"),
    ]);
    let data = json!({"type": "not-the-event-type", "id": 9}).to_string();
    let data = data.as_bytes();
    assert_eq!(
        t.extract(&binary, data).as_deref(),
        Some("com.example.created")
    );
    assert_eq!(id.extract(&binary, data).as_deref(), Some("A-1"));
    // Structured mode: no ce- headers, the envelope is the body.
    let structured =
        json!({"specversion": "1.0", "type": "com.example.deleted", "id": "B-2", "data": {}})
            .to_string();
    let structured = structured.as_bytes();
    assert_eq!(
        t.extract(&HeaderMap::new(), structured).as_deref(),
        Some("com.example.deleted")
    );
    assert_eq!(
        id.extract(&HeaderMap::new(), structured).as_deref(),
        Some("B-2")
    );
    // An empty header falls through to the body.
    let empty = headers(&[("ce-type", "")]);
    assert_eq!(
        t.extract(&empty, structured).as_deref(),
        Some("com.example.deleted")
    );
}

#[test]
fn extractor_values_strings_numbers_and_nothing_else() {
    let body = json!({
        "s": "x", "n": 42, "f": 1.5, "neg": -3, "empty": "", "null": null,
        "b": true, "arr": [7, "y"], "obj": {"a/b": "slash", "m~n": "tilde"}
    })
    .to_string();
    let none = HeaderMap::new();
    let get = |spec| ex(spec).extract(&none, body.as_bytes());
    assert_eq!(get("/s").as_deref(), Some("x"));
    assert_eq!(get("/n").as_deref(), Some("42"));
    assert_eq!(get("/f").as_deref(), Some("1.5"));
    assert_eq!(get("/neg").as_deref(), Some("-3"));
    assert_eq!(get("/arr/0").as_deref(), Some("7"));
    assert_eq!(get("/arr/1").as_deref(), Some("y"));
    assert_eq!(get("/obj/a~1b").as_deref(), Some("slash"));
    assert_eq!(get("/obj/m~0n").as_deref(), Some("tilde"));
    for absent in [
        "/empty",
        "/null",
        "/b",
        "/arr",
        "/obj",
        "/missing",
        "/s/deeper",
        "/arr/9",
        "/arr/-",
    ] {
        assert_eq!(get(absent), None, "{absent}");
    }
    // Not an object at all.
    assert_eq!(
        ex("/type").extract(&none, json!([1, 2]).to_string().as_bytes()),
        None
    );
    assert_eq!(
        ex("/type").extract(&none, json!("type").to_string().as_bytes()),
        None
    );
}

#[test]
fn extractor_header_values() {
    let h = headers(&[
        ("x-type", "  padded  "),
        ("x-twice", "first"),
        ("x-twice", "second"),
    ]);
    let mut h = h;
    h.insert("x-binary", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    let body = b"{}";
    assert_eq!(
        ex("header:X-Type").extract(&h, body).as_deref(),
        Some("padded")
    );
    assert_eq!(
        ex("header:x-twice").extract(&h, body).as_deref(),
        Some("first")
    );
    assert_eq!(ex("header:x-binary").extract(&h, body), None);
    assert_eq!(ex("header:x-absent").extract(&h, body), None);
}

#[test]
fn extractor_syntax_errors_quote_the_value() {
    let err = |spec: &str| Extractor::parse(spec).unwrap_err().to_string();
    assert_eq!(
        err("type"),
        "`type` is neither a JSON pointer (`/a/b`) nor `header:NAME`"
    );
    assert_eq!(
        err(""),
        "`` is neither a JSON pointer (`/a/b`) nor `header:NAME`"
    );
    assert_eq!(err("header:"), "`header:`: not a valid header name");
    assert_eq!(
        err("header:bad name"),
        "`header:bad name`: not a valid header name"
    );
    assert_eq!(
        err("/a~2b"),
        "`/a~2b`: in a JSON pointer `~` must be followed by 0 or 1"
    );
    assert_eq!(
        err("/a~"),
        "`/a~`: in a JSON pointer `~` must be followed by 0 or 1"
    );
    assert_eq!(ex("/").to_string(), "/");
    assert_eq!(ex("header:X-Custom").to_string(), "header:x-custom");
    assert_eq!(
        ex("header:X-Custom").header_name().map(|h| h.as_str()),
        Some("x-custom")
    );
    assert_eq!(ex("/type").header_name(), None);
}

#[test]
fn first_of_tries_in_order() {
    let e = Extractor::first_of([ex("/a"), ex("header:x-b"), ex("/c")]);
    assert_eq!(e.to_string(), "/a or header:x-b or /c");
    let h = headers(&[("x-b", "from-header")]);
    assert_eq!(
        e.extract(&h, json!({"a": "A", "c": "C"}).to_string().as_bytes())
            .as_deref(),
        Some("A")
    );
    assert_eq!(
        e.extract(&h, json!({"c": "C"}).to_string().as_bytes())
            .as_deref(),
        Some("from-header")
    );
    assert_eq!(
        e.extract(&HeaderMap::new(), json!({"c": "C"}).to_string().as_bytes())
            .as_deref(),
        Some("C")
    );
    // A body that is not JSON has nothing at any pointer; headers still answer.
    assert_eq!(e.extract(&h, b"{\"a\": ").as_deref(), Some("from-header"));
    assert_eq!(e.extract(&HeaderMap::new(), b"{\"a\": "), None);
}

fn new_envelope(time: SystemTime) -> NewEnvelope<'static> {
    NewEnvelope {
        event_type: "payment_created",
        event_id: "evt-1",
        subject_id: "pay-9",
        time,
    }
}

#[test]
fn optum_wrap_builds_the_envelope() {
    let payload = json!({"org": "ORG-1", "amount": 12.5});
    // 2026-11-28T15:24:40Z
    let wrapped = Preset::Optum.wrap(payload.clone(), &new_envelope(at(1_795_879_480)));
    let expected = json!({
        "id": "pay-9",
        "source": "hookrouter-send",
        "specVersion": "1.0",
        "type": "payment_created",
        "dataContentType": "application/json",
        "time": "2026-11-28T15:24:40.000Z",
        "causationId": "evt-1",
        "data": payload,
    });
    assert_eq!(wrapped, expected);
    // What the wrapper builds, the preset reads back.
    let none = HeaderMap::new();
    assert_eq!(
        Preset::Optum
            .type_from()
            .extract(&none, wrapped.to_string().as_bytes())
            .as_deref(),
        Some("payment_created")
    );
    assert_eq!(
        Preset::Optum
            .id_from()
            .extract(&none, wrapped.to_string().as_bytes())
            .as_deref(),
        Some("evt-1")
    );
}

#[test]
fn cloudevents_wrap_builds_a_structured_event() {
    let wrapped = Preset::Cloudevents.wrap(json!([1, 2]), &new_envelope(at(0)));
    let expected = json!({
        "specversion": "1.0",
        "id": "evt-1",
        "source": "hookrouter-send",
        "type": "payment_created",
        "datacontenttype": "application/json",
        "time": "1970-01-01T00:00:00.000Z",
        "data": [1, 2],
    });
    assert_eq!(wrapped, expected);
    let none = HeaderMap::new();
    assert_eq!(
        Preset::Cloudevents
            .id_from()
            .extract(&none, wrapped.to_string().as_bytes())
            .as_deref(),
        Some("evt-1")
    );
}

#[test]
fn a_whole_envelope_is_sent_unchanged() {
    let optum: Value = serde_json::from_str(OPTUM_SAMPLE).unwrap();
    let new = new_envelope(at(0));
    assert_eq!(Preset::Optum.wrap(optum.clone(), &new), optum);
    let ce = json!({"specversion": "1.0", "type": "t", "id": "i", "source": "s", "data": {"k": 1}});
    assert_eq!(Preset::Cloudevents.wrap(ce.clone(), &new), ce);
    let ce_b64 =
        json!({"specversion": "1.0", "type": "t", "id": "i", "source": "s", "data_base64": "AA=="});
    assert_eq!(Preset::Cloudevents.wrap(ce_b64.clone(), &new), ce_b64);
    // The other kind's envelope, or a partial one, is a payload and gets wrapped.
    assert_ne!(Preset::Cloudevents.wrap(optum.clone(), &new), optum);
    let partial = json!({"type": "t", "data": {}});
    assert_eq!(Preset::Optum.wrap(partial.clone(), &new)["data"], partial);
}

#[test]
fn presets_without_envelope_send_the_payload_as_is() {
    let payload = json!({"id": "evt_1", "type": "invoice.paid"});
    for p in [Preset::Github, Preset::Stripe, Preset::StandardWebhooks] {
        assert!(!p.has_envelope());
        assert_eq!(p.wrap(payload.clone(), &new_envelope(at(0))), payload);
    }
    assert!(Preset::Optum.has_envelope() && Preset::Cloudevents.has_envelope());
}

#[test]
fn wrap_clamps_times_it_cannot_print() {
    let before = Preset::Optum.wrap(
        json!({}),
        &new_envelope(UNIX_EPOCH - Duration::from_secs(5)),
    );
    assert_eq!(before["time"], "1970-01-01T00:00:00.000Z");
    let far = Preset::Optum.wrap(json!({}), &new_envelope(at(u64::MAX / 4)));
    assert_eq!(far["time"], "9999-12-31T23:59:59.000Z");
}

#[test]
fn send_headers_carry_github_type_and_delivery() {
    let sent = Preset::Github.send_headers("push", "d-1");
    let h = headers(&[(&sent[0].0, &sent[0].1), (&sent[1].0, &sent[1].1)]);
    let body = b"{}";
    assert_eq!(
        Preset::Github.type_from().extract(&h, body).as_deref(),
        Some("push")
    );
    assert_eq!(
        Preset::Github.id_from().extract(&h, body).as_deref(),
        Some("d-1")
    );
    for p in [
        Preset::Optum,
        Preset::Stripe,
        Preset::StandardWebhooks,
        Preset::Cloudevents,
    ] {
        assert!(p.send_headers("t", "i").is_empty(), "{p}");
    }
}
