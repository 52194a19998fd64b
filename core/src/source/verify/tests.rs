//! Signature vectors computed outside this code (published examples, `openssl`),
//! then the refusals every scheme owes: tampered body, wrong secret, missing and
//! malformed headers, stale and future timestamps, rotation, sign → verify.

use super::*;
use http::header::HeaderValue;

mod timestamped;

const SAMPLE_OPTUM: &[u8] = include_bytes!("../../../../samples/optum/batch_created.json");

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn verifier(scheme: Scheme, secrets: &[&str]) -> Verifier {
    let secrets = secrets.iter().map(|s| s.to_string()).collect();
    Verifier::new(scheme, secrets, DEFAULT_TOLERANCE).unwrap()
}

fn hmac_scheme(header: &str) -> Scheme {
    Scheme::HmacSha256 {
        header: header.into(),
    }
}

fn header_map(pairs: Vec<(String, String)>) -> HeaderMap {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers(&pairs)
}

// ---- hmac-sha256 -------------------------------------------------------------

/// GitHub's documented test values ("Validating webhook deliveries", docs.github.com).
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn github() -> Verifier {
    verifier(hmac_scheme("X-Hub-Signature-256"), &[GITHUB_SECRET])
}

#[test]
fn github_documented_vector_passes_prefixed_bare_and_upper_case() {
    let now = at(0);
    for value in [
        format!("sha256={GITHUB_SIG}"),
        GITHUB_SIG.into(),
        GITHUB_SIG.to_uppercase(),
    ] {
        let h = headers(&[("x-hub-signature-256", &value)]);
        assert_eq!(
            github().verify(&h, b"Hello, World!", now),
            Ok(()),
            "{value}"
        );
    }
}

#[test]
fn hmac_refuses_tampered_body_wrong_secret_missing_and_malformed() {
    let good = headers(&[("X-Hub-Signature-256", &format!("sha256={GITHUB_SIG}"))]);
    let mismatch = Err(VerifyError::Mismatch("x-hub-signature-256".into()));
    assert_eq!(github().verify(&good, b"Hello, World?", at(0)), mismatch);
    let wrong = verifier(hmac_scheme("X-Hub-Signature-256"), &["another secret"]);
    assert_eq!(wrong.verify(&good, b"Hello, World!", at(0)), mismatch);
    assert_eq!(
        github().verify(&HeaderMap::new(), b"Hello, World!", at(0)),
        Err(VerifyError::Missing("x-hub-signature-256".into()))
    );
    let odd = &GITHUB_SIG[1..];
    let short = &GITHUB_SIG[..62];
    for bad in ["", "sha256=", "sha256=zz", odd, short, "sha1=abcdef"] {
        let h = headers(&[("x-hub-signature-256", bad)]);
        let err = github().verify(&h, b"Hello, World!", at(0)).unwrap_err();
        assert!(
            matches!(err, VerifyError::Malformed { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn optum_sample_signed_with_openssl_passes() {
    // Computed outside this code, from the repository root:
    //   openssl dgst -sha256 -hmac 'optum-test-secret' -hex \
    //     < samples/optum/batch_created.json
    let sig = "36437a2afd9c00b0b9d3b9b3619759d78380f443bf79222095d1f3fd9156cfce";
    let v = verifier(
        hmac_scheme("X-Optum-Webhook-Callback-Hmac-Signature"),
        &["optum-test-secret"],
    );
    let h = headers(&[("x-optum-webhook-callback-hmac-signature", sig)]);
    assert_eq!(v.verify(&h, SAMPLE_OPTUM, at(0)), Ok(()));
    let mut tampered = SAMPLE_OPTUM.to_vec();
    tampered.pop(); // the final newline is signed too
    assert!(matches!(
        v.verify(&h, &tampered, at(0)),
        Err(VerifyError::Mismatch(_))
    ));
    // `sign` mirrors Optum: bare hex, in the configured header.
    let expected = vec![(
        "x-optum-webhook-callback-hmac-signature".to_string(),
        sig.to_string(),
    )];
    assert_eq!(v.sign(SAMPLE_OPTUM, at(0), ""), expected);
}

#[test]
fn hmac_refuses_a_header_given_twice() {
    let h = headers(&[
        ("x-hub-signature-256", GITHUB_SIG),
        ("x-hub-signature-256", GITHUB_SIG),
    ]);
    let err = github().verify(&h, b"Hello, World!", at(0)).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
}

#[test]
fn hmac_sign_mirrors_github_prefix() {
    let signed = github().sign(b"Hello, World!", at(0), "");
    assert_eq!(
        signed,
        vec![("x-hub-signature-256".into(), format!("sha256={GITHUB_SIG}"))]
    );
}

// ---- every scheme --------------------------------------------------------------

fn signed_schemes() -> Vec<(Scheme, [&'static str; 2])> {
    vec![
        (
            hmac_scheme("X-Optum-Webhook-Callback-Hmac-Signature"),
            ["old-secret", "new-secret"],
        ),
        (
            hmac_scheme("X-Hub-Signature-256"),
            ["old-secret", "new-secret"],
        ),
        (
            Scheme::StandardWebhooks,
            [
                timestamped::SW_SECRET,
                "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=",
            ],
        ),
        (Scheme::Stripe, ["whsec_old", "whsec_new"]),
    ]
}

#[test]
fn sign_round_trips_through_verify_for_every_scheme() {
    let now = at(1_800_000_000);
    for (scheme, secrets) in signed_schemes() {
        let v = verifier(scheme.clone(), &secrets);
        let h = header_map(v.sign(SAMPLE_OPTUM, now, "msg_1"));
        assert_eq!(v.verify(&h, SAMPLE_OPTUM, now), Ok(()), "{scheme:?}");
        assert!(v.verify(&h, b"{}", now).is_err(), "{scheme:?}");
    }
}

#[test]
fn rotation_accepts_either_secret_and_signs_with_the_newest() {
    let now = at(1_800_000_000);
    for (scheme, [old, new]) in signed_schemes() {
        let both = verifier(scheme.clone(), &[old, new]);
        for one in [old, new] {
            let h = header_map(verifier(scheme.clone(), &[one]).sign(SAMPLE_OPTUM, now, "m"));
            assert_eq!(
                both.verify(&h, SAMPLE_OPTUM, now),
                Ok(()),
                "{scheme:?} {one}"
            );
        }
        let h = header_map(both.sign(SAMPLE_OPTUM, now, "m"));
        assert_eq!(
            verifier(scheme.clone(), &[new]).verify(&h, SAMPLE_OPTUM, now),
            Ok(())
        );
        let err = verifier(scheme.clone(), &[old]).verify(&h, SAMPLE_OPTUM, now);
        assert!(matches!(err, Err(VerifyError::Mismatch(_))), "{scheme:?}");
    }
}

#[test]
fn none_passes_everything_and_signs_nothing() {
    let v = verifier(Scheme::None, &["ignored"]);
    assert_eq!(v.verify(&HeaderMap::new(), b"anything", at(0)), Ok(()));
    assert!(v.sign(b"x", at(0), "m").is_empty());
}

#[test]
fn hostile_header_values_are_refused_without_panic() {
    let long = "a".repeat(100_000);
    let values: Vec<HeaderValue> = vec![
        HeaderValue::from_bytes(b"\xff\xfe\x80 v1,\xc3\x28").unwrap(),
        HeaderValue::from_static(""),
        HeaderValue::from_static(" , ,,=,t=,v1=,t"),
        HeaderValue::from_static("t=99999999999999999999999,v1=00"),
        HeaderValue::from_static("sha256="),
        HeaderValue::from_static("v1,"),
        HeaderValue::from_str(&long).unwrap(),
    ];
    let names = [
        "x-hub-signature-256",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];
    for (scheme, secrets) in signed_schemes() {
        let v = verifier(scheme.clone(), &secrets);
        for value in &values {
            let mut h = HeaderMap::new();
            for name in names {
                h.insert(name, value.clone());
            }
            h.insert("x-optum-webhook-callback-hmac-signature", value.clone());
            assert!(
                v.verify(&h, &[0xff; 3], at(0)).is_err(),
                "{scheme:?} {value:?}"
            );
            assert!(
                v.verify(&h, b"", SystemTime::UNIX_EPOCH - Duration::from_secs(9))
                    .is_err()
            );
        }
    }
}

#[test]
fn config_errors() {
    let new = |scheme, secrets: &[&str]| {
        Verifier::new(
            scheme,
            secrets.iter().map(|s| s.to_string()).collect(),
            DEFAULT_TOLERANCE,
        )
        .unwrap_err()
    };
    assert_eq!(
        new(Scheme::Stripe, &[]),
        VerifyConfigError::NoSecret("stripe")
    );
    assert_eq!(
        new(Scheme::Stripe, &["a", "b", "c"]),
        VerifyConfigError::TooManySecrets(3)
    );
    assert_eq!(
        new(hmac_scheme("x-sig"), &["a", ""]),
        VerifyConfigError::EmptySecret(2)
    );
    assert_eq!(
        new(hmac_scheme("bad header"), &["a"]),
        VerifyConfigError::BadHeaderName("bad header".into())
    );
    assert_eq!(
        new(Scheme::StandardWebhooks, &["whsec_!!"]),
        VerifyConfigError::BadBase64Secret(1)
    );
    assert_eq!(
        new(Scheme::StandardWebhooks, &["whsec_"]),
        VerifyConfigError::EmptySecret(1)
    );
    // A secret never appears in a message or a Debug print.
    let v = verifier(Scheme::Stripe, &["whsec_do_not_print"]);
    assert!(!format!("{v:?}").contains("do_not_print"));
}

#[test]
fn scheme_names_from_config() {
    assert_eq!(Scheme::from_config("none", None), Ok(Scheme::None));
    assert_eq!(Scheme::from_config("stripe", None), Ok(Scheme::Stripe));
    assert_eq!(
        Scheme::from_config("standard-webhooks", None),
        Ok(Scheme::StandardWebhooks)
    );
    assert_eq!(
        Scheme::from_config("hmac-sha256", Some("X-Sig")),
        Ok(hmac_scheme("X-Sig"))
    );
    assert_eq!(
        Scheme::from_config("hmac-sha256", None),
        Err(VerifyConfigError::HeaderRequired)
    );
    assert_eq!(
        Scheme::from_config("stripe", Some("X")),
        Err(VerifyConfigError::HeaderNotAllowed("stripe"))
    );
    let unknown = Scheme::from_config("hmac", None).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "unknown verify scheme `hmac` (expected none, hmac-sha256, standard-webhooks or stripe)"
    );
    for s in [
        Scheme::None,
        hmac_scheme("x"),
        Scheme::StandardWebhooks,
        Scheme::Stripe,
    ] {
        assert_eq!(
            Scheme::from_config(
                s.name(),
                matches!(s, Scheme::HmacSha256 { .. }).then_some("x")
            ),
            Ok(s)
        );
    }
}
