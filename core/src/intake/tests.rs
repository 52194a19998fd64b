use std::path::Path;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::config::Config;

fn config() -> Config {
    let text = r#"
[[sources]]
name = "plain"
type_from = "/type"
id_from = "/id"
verify = { scheme = "none" }

[[sources]]
name = "by-header"
type_from = "header:x-type"
verify = { scheme = "none" }

[[sources]]
name = "signed"
type_from = "/type"
verify = { scheme = "hmac-sha256", header = "X-Sig", secret_env = "S" }
"#;
    Config::parse(Path::new("/x/router.toml"), text, &|_| Some("k".into())).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn a_good_request_becomes_an_event_without_credentials() {
    let c = config();
    let h = headers(&[
        ("authorization", "Bearer provider-token"),
        ("cookie", "session=1"),
        ("proxy-authorization", "Basic eA=="),
        ("x-request-id", "r-1"),
    ]);
    let body = br#"{"type":"payment_created","id":"ext-1"}"#.to_vec();
    let e = event(
        c.source("plain").unwrap(),
        &h,
        body.clone(),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(e.event_type, "payment_created");
    assert_eq!(e.external_id.as_deref(), Some("ext-1"));
    assert_eq!(e.source, "plain");
    assert_eq!(e.body.as_bytes(), &body[..]);
    assert_eq!(
        e.headers,
        vec![("x-request-id".to_string(), "r-1".to_string())]
    );
}

#[test]
fn each_check_refuses_with_its_status_and_reason() {
    let c = config();
    let now = SystemTime::now();
    let cases: [(&str, &[u8], StatusCode, &str); 4] = [
        (
            "signed",
            br#"{"type":"t"}"#,
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        ("plain", b"{not json", StatusCode::BAD_REQUEST, "json"),
        ("plain", br#"{"kind":"t"}"#, StatusCode::BAD_REQUEST, "type"),
        ("plain", br#"{"type":""}"#, StatusCode::BAD_REQUEST, "type"),
    ];
    for (source, body, status, reason) in cases {
        let r = event(
            c.source(source).unwrap(),
            &HeaderMap::new(),
            body.to_vec(),
            now,
        )
        .unwrap_err();
        assert_eq!((r.status, r.reason), (status, reason), "{}", r.message);
        assert!(!r.message.is_empty());
    }
}

#[test]
fn a_body_is_checked_as_json_even_when_no_pointer_reads_it() {
    let c = config();
    let h = headers(&[("x-type", "t")]);
    let source = c.source("by-header").unwrap();
    for broken in [&b"{not json"[..], b"{\"a\":1} trailing", b""] {
        let r = event(source, &h, broken.to_vec(), SystemTime::now()).unwrap_err();
        assert_eq!((r.status, r.reason), (StatusCode::BAD_REQUEST, "json"));
    }
    let e = event(source, &h, br#"{"a":1}"#.to_vec(), SystemTime::now()).unwrap();
    assert_eq!(e.event_type, "t");
}

#[test]
fn admin_views_mask_signatures_and_secrets() {
    let c = config();
    let stored = vec![
        ("x-sig".to_string(), "abc".to_string()),
        ("x-hub-signature-256".to_string(), "sha256=00".to_string()),
        ("x-api-token".to_string(), "t".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let shown = masked_headers(&stored, c.source("signed"));
    assert_eq!(shown[0].1, MASK);
    assert_eq!(shown[1].1, MASK);
    assert_eq!(shown[2].1, MASK);
    assert_eq!(shown[3].1, "application/json");
}
