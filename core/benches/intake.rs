//! What reading the type and id out of a body costs: the `serde_json::Value`
//! tree the ingress built before, against the walk of `json_scan` it uses now,
//! on the 756-byte Optum sample, in the same run.
//!
//! `cargo bench -p hookrouter-core --bench intake`
//!
//! Timing never decides anything here; it prints figures.

use std::hint::black_box;
use std::time::Instant;

use hookrouter_core::json_scan::{Pointer, Scanned};
use serde_json::Value;

const ROUNDS: usize = 200_000;

fn main() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/optum/payment_loading_requested.json"
    ))
    .unwrap();
    // The Optum preset's type and id.
    let (t, i) = ("/eventType", "/id");
    let (pt, pi) = (Pointer::new(t), Pointer::new(i));
    let scalar = |v: &Value, p: &str| match v.pointer(p) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    assert_eq!(
        Scanned::scan(&body, [&pt]).unwrap().get(&pt),
        scalar(&serde_json::from_slice(&body).unwrap(), t)
    );

    println!(
        "| way (Optum sample, {} bytes) | ns per body, median of 5 |",
        body.len()
    );
    println!("| --- | ---: |");
    let mut results = Vec::new();
    for (name, run) in [
        (
            "tree: from_slice::<Value>, then two pointers",
            &(|| {
                let v: Value = serde_json::from_slice(black_box(&body)).unwrap();
                (scalar(&v, t), scalar(&v, i))
            }) as &dyn Fn() -> (Option<String>, Option<String>),
        ),
        (
            "walk: one pass for both pointers (json_scan::Scanned)",
            &(|| {
                let s = Scanned::scan(black_box(&body), [&pt, &pi]).unwrap();
                (s.get(&pt), s.get(&pi))
            }),
        ),
    ] {
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..ROUNDS {
                    black_box(run());
                }
                started.elapsed().as_nanos() as f64 / ROUNDS as f64
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("| {name} | {:.0} |", times[2]);
        results.push(times[2]);
    }
    println!("| walk / tree | {:.2} |", results[1] / results[0]);
}
