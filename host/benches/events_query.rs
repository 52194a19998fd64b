//! Event listing and search on a store of 1,000,000 events: the time of
//! `GET /admin/events` with each filter, through the store (`Queries::events`)
//! and through the router's admin API over HTTP.
//!
//! `cargo bench -p hookrouter --bench events_query`
//! (`BENCH_EVENTS=N` for another size; `BENCH_KEEP=DIR` keeps the store there
//! and reuses it on the next run.)
//!
//! The store is filled with bulk SQL in one transaction (the rows ingest
//! writes: the event, its search entry, one delivery), over seven days of
//! arrival times: 80% `optum`, 20% `github`, eight event types, 97% done, 2%
//! pending, 1% dead. Each body is the Optum sample with its own ids, amount
//! and a word `wNNNN` shared by about one event in a thousand; one event in
//! 100,000 holds a word of its own. Timing never decides anything here; it
//! prints figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hookrouter::store::sqlite::SqliteStore;
use hookrouter::store::{EventFilter, EventStatus, Page, Queries};

const DAY_MS: u64 = 86_400_000;
const TYPES: [&str; 8] = [
    "payment_loading_requested",
    "payment_loaded",
    "payment_released",
    "payment_failed",
    "batch_created",
    "batch_closed",
    "refund_requested",
    "refund_done",
];

fn sample() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/optum/payment_loading_requested.json"
    ))
    .unwrap()
}

/// The `headers` column as the store encodes it (length-prefixed pairs).
fn headers_blob() -> Vec<u8> {
    let mut out = Vec::new();
    for part in [
        "content-type",
        "application/json",
        "x-optum-webhook-callback-hmac-signature",
        "0f3a9c2e5b7d4f6a8c1e3b5d7f9a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a",
    ] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn fill(path: &Path, n: u64) {
    drop(SqliteStore::open(path, 100).expect("create and migrate the store"));
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;",
    )
    .unwrap();
    let template = sample();
    let headers = headers_blob();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = now - 7 * DAY_MS;
    let step = (7 * DAY_MS) / n;
    let t = Instant::now();
    let tx = conn.transaction().unwrap();
    {
        let mut event = tx
            .prepare(
                "INSERT INTO events (id, source, event_type, external_id, received_at, headers, body,
                                     hops, parent_id, root_id, status, open_count, dead_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, NULL, ?1, ?8, ?9, ?10)",
            )
            .unwrap();
        let mut fts = tx
            .prepare("INSERT INTO events_fts (rowid, body) VALUES (last_insert_rowid(), ?1)")
            .unwrap();
        let mut delivery = tx
            .prepare(
                "INSERT INTO deliveries (event_id, plugin, state, attempts, due_at, updated_at, version)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4, 'v1')",
            )
            .unwrap();
        let mut dedupe = tx
            .prepare("INSERT INTO dedupe (source, external_id, event_id, received_at) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for i in 0..n {
            let ms = start + i * step;
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000,
            );
            let id = uuid::Uuid::new_v7(ts).hyphenated().to_string();
            let source = if i % 5 == 0 { "github" } else { "optum" };
            let event_type = TYPES[(i % 8) as usize];
            let (status, open, dead) = match i % 100 {
                0 => ("dead", 0, 1),
                1 | 2 => ("pending", 1, 0),
                _ => ("done", 0, 0),
            };
            let mut body = template
                .replace("PAY-000193", &format!("PAY-{i:07}"))
                .replace("1250.00", &format!("{}.{:02}", i % 9973, i % 100))
                .replace(
                    "Scheduled distribution",
                    &format!("Scheduled distribution w{:04}", (i * 7919) % 1000),
                );
            if i % 100_000 == 12_345 {
                body = body.replace("OPTUMACH", &format!("OPTUMACH uniq{i}"));
            }
            let external = format!("ext-{i}");
            event
                .execute(rusqlite::params![
                    id, source, event_type, external, ms as i64, headers, body, status, open, dead
                ])
                .unwrap();
            fts.execute([&body]).unwrap();
            let state = match status {
                "dead" => "dead",
                "pending" => "pending",
                _ => "done",
            };
            let plugin = if i % 3 == 0 {
                "payment_audit"
            } else {
                "batch_notify"
            };
            delivery
                .execute(rusqlite::params![id, plugin, state, ms as i64])
                .unwrap();
            dedupe
                .execute(rusqlite::params![source, external, id, ms as i64])
                .unwrap();
            if i > 0 && i % 200_000 == 0 {
                eprintln!("  {i} events ({:.0} s)", t.elapsed().as_secs_f64());
            }
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .unwrap();
    eprintln!("filled {n} events in {:.1} s", t.elapsed().as_secs_f64());
}

struct Case {
    name: &'static str,
    query: String,
}

/// The `cursor` of page `pages` (each of 50) of the whole listing.
async fn deep_cursor(store: &SqliteStore, pages: usize) -> String {
    let page = store
        .events(
            &EventFilter::default(),
            Page {
                before: None,
                limit: pages * 50,
            },
        )
        .await
        .unwrap();
    page.last().unwrap().id.to_string()
}

fn rfc3339(ago: Duration) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() - ago).to_string()
}

fn cases(cursor: &str) -> Vec<Case> {
    let c = |name, query: &str| Case {
        name,
        query: query.to_string(),
    };
    let hour = rfc3339(Duration::from_secs(3600));
    let six_days = rfc3339(Duration::from_secs(6 * 86_400));
    vec![
        c("no filter, first page", ""),
        c("no filter, page 101 (cursor)", &format!("cursor={cursor}")),
        c("source=github", "source=github"),
        c("type=batch_created", "type=batch_created"),
        c("status=dead", "status=dead"),
        c("status=pending", "status=pending"),
        c(
            "source=github&type=payment_failed&status=dead",
            "source=github&type=payment_failed&status=dead",
        ),
        c("since=1 hour ago", &format!("since={hour}")),
        c("until=6 days ago", &format!("until={six_days}")),
        c("q=payment (every event)", "q=payment"),
        c("q=w0042 (1 in 1,000)", "q=w0042"),
        c("q=uniq12345 (one event)", "q=uniq12345"),
        c("q=nowhere (no event)", "q=nowhere"),
        c("q=payment w0042", "q=payment%20w0042"),
        c("q=w0042, page 2 (cursor)", "q=w0042&cursor=CURSOR_Q"),
        c("q=payment&status=dead", "q=payment&status=dead"),
        c("q=w0042&status=dead", "q=w0042&status=dead"),
        c("q=payment&source=github", "q=payment&source=github"),
        c("q=w0042&type=batch_created", "q=w0042&type=batch_created"),
        c(
            "q=payment&status=dead&type=payment_failed (none)",
            "q=payment&status=dead&type=payment_failed",
        ),
        c("q=payment&status=pending", "q=payment&status=pending"),
        c(
            "q=payment&since=1 hour ago",
            &format!("q=payment&since={hour}"),
        ),
        c(
            "q=payment&until=6 days ago",
            &format!("q=payment&until={six_days}"),
        ),
        c(
            "q=w0042&until=6 days ago",
            &format!("q=w0042&until={six_days}"),
        ),
    ]
}

/// The filter and page a query string means (the admin API's parsing, done
/// here again so the store can be timed alone).
fn parse(query: &str) -> (EventFilter, Page) {
    let mut f = EventFilter::default();
    let mut page = Page {
        before: None,
        limit: 50,
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "source" => f.source = Some(v),
            "type" => f.event_type = Some(v),
            "status" => f.status = EventStatus::parse(&v),
            "q" => f.q = Some(v),
            "since" => f.since = Some(humantime::parse_rfc3339_weak(&v).unwrap()),
            "until" => f.until = Some(humantime::parse_rfc3339_weak(&v).unwrap()),
            "cursor" => page.before = Some(v.parse().unwrap()),
            _ => panic!("{k}"),
        }
    }
    (f, page)
}

fn stats(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let first = ms[0];
    (ms[ms.len() / 2], ms[(ms.len() - 1) * 95 / 100], first)
}

const RUNS: usize = 21;

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (dir, _tmp): (PathBuf, Option<tempfile::TempDir>) = match std::env::var_os("BENCH_KEEP") {
        Some(d) => (PathBuf::from(d), None),
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hookrouter.db");
    if !path.exists() {
        fill(&path, n);
    } else {
        eprintln!("reusing {}", path.display());
    }
    let size: u64 = ["", "-wal"]
        .iter()
        .map(|s| std::fs::metadata(format!("{}{s}", path.display())).map_or(0, |m| m.len()))
        .sum();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(&path, 100).unwrap());
        let fts_bytes: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'events_fts%'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        println!(
            "store: {} events, {:.0} MiB on disk, of which the search index {:.0} MiB",
            n,
            size as f64 / (1 << 20) as f64,
            fts_bytes as f64 / (1 << 20) as f64
        );
        let cursor = deep_cursor(&store, 100).await;
        let (qf, _) = parse("q=w0042");
        let q_cursor = store
            .events(&qf, Page { before: None, limit: 50 })
            .await
            .unwrap()
            .last()
            .unwrap()
            .id
            .to_string();
        let cases: Vec<Case> = cases(&cursor)
            .into_iter()
            .map(|c| Case {
                query: c.query.replace("CURSOR_Q", &q_cursor),
                ..c
            })
            .collect();

        // Through the store.
        println!(
            "\nQueries::events, limit 50, {RUNS} runs each (ms): first run, median, p95; rows"
        );
        for c in &cases {
            let (f, page) = parse(&c.query);
            let mut times = Vec::new();
            let mut rows = 0;
            for _ in 0..RUNS {
                let t = Instant::now();
                rows = store.events(&f, page).await.unwrap().len();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let first = times[0];
            let (median, p95, _) = stats(times);
            println!("  {:<48} {first:>8.2} {median:>8.2} {p95:>8.2}  {rows:>3}", c.name);
        }
        drop(store);

        // Through the admin API of a running router on the same store.
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n",
            path.display()
        );
        std::fs::write(dir.join("router.toml"), config).unwrap();
        let config = hookrouter::config::Config::load(&dir.join("router.toml")).unwrap();
        let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let router = tokio::spawn(hookrouter::run(config, ingress, admin, async {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::new();
        let base = format!("http://{admin_addr}/admin/events");
        for _ in 0..100 {
            if client.get(&base).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("\nGET /admin/events over HTTP (JSON answer), {RUNS} runs each (ms): first run, median, p95");
        let mut worst_plain: f64 = 0.0;
        let mut worst_q: f64 = 0.0;
        for c in &cases {
            let url = if c.query.is_empty() {
                base.clone()
            } else {
                format!("{base}?{}", c.query)
            };
            let mut times = Vec::new();
            for _ in 0..RUNS {
                let t = Instant::now();
                let resp = client.get(&url).send().await.unwrap();
                assert!(resp.status().is_success(), "{url}: {}", resp.status());
                let _ = resp.bytes().await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let first = times[0];
            let (median, p95, _) = stats(times);
            if c.query.contains("q=") {
                worst_q = worst_q.max(p95);
            } else {
                worst_plain = worst_plain.max(p95);
            }
            println!("  {:<48} {first:>8.2} {median:>8.2} {p95:>8.2}", c.name);
        }
        println!(
            "\nworst p95: {worst_plain:.1} ms without q (target 50), {worst_q:.1} ms with q (target 500)"
        );
        let _ = stop_tx.send(());
        let _ = router.await;
    });
}
