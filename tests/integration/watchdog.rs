//! The watchdog against a real SMTP server (aiosmtpd, started by the tests) with STARTTLS,
//! implicit TLS and AUTH, and its fault modes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use edgewatch::config::{Config, Secret, SmtpTls};
use edgewatch::spool::{self, ClipPaths, Sidecar};
use tokio_util::sync::CancellationToken;

use crate::common::*;

pub(crate) const USER: &str = "alerts";
pub(crate) const PASS: &str = "smtp-test-password";

/// An aiosmtpd server on loopback; see tests/fixtures/smtp_server.py for the fault modes.
pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    pub maildir: PathBuf,
    args: Vec<String>,
}

fn python() -> PathBuf {
    std::env::var("EDGEWATCH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/opt/edgewatch-test-venv/bin/python"))
}

/// A test CA and server certificates it signed, made once with openssl: for localhost (good),
/// for another name, and for localhost but expired in 2020. Returns (server cert, server key,
/// CA cert) of the good one. (rustls refuses a CA certificate as a server's.)
fn cert() -> (PathBuf, PathBuf, PathBuf) {
    static CERT: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    CERT.get_or_init(|| {
        let dir = repo().join("target/test-fixtures/tls");
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k, ca) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
        if !dir.join("expired.pem").exists() {
            let script = format!(
                "set -e; cd {d}; rm -rf db; mkdir db; touch db/index.txt; echo 01 > db/serial; \
                 openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=edgewatch-test-ca -keyout ca.key -out ca.pem; \
                 printf '[ca]\\ndefault_ca = c\\n[c]\\ndir = .\\ndatabase = db/index.txt\\nserial = db/serial\\nnew_certs_dir = db\\ndefault_md = sha256\\npolicy = p\\n[p]\\ncommonName = supplied\\n' > ca.cnf; \
                 leaf() {{ openssl req -newkey rsa:2048 -nodes -subj /CN=$2 -keyout $1.key -out $1.csr; \
                   printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' \"$3\" > $1.ext; }}; \
                 leaf key localhost DNS:localhost,IP:127.0.0.1; mv key.key key.pem; \
                 openssl x509 -req -in key.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -extfile key.ext -out cert.pem; \
                 leaf wrongname other.example DNS:other.example; \
                 openssl x509 -req -in wrongname.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -extfile wrongname.ext -out wrongname.pem; \
                 leaf expired localhost DNS:localhost,IP:127.0.0.1; \
                 openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
                   -notext -startdate 20200101000000Z -enddate 20200102000000Z -extfile expired.ext",
                d = dir.display()
            );
            let out = Command::new("bash").args(["-c", &script]).output().unwrap();
            assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        (c, k, ca)
    })
    .clone()
}

/// A server certificate other than the good one: `wrongname` (for other.example) or
/// `expired` (for localhost, expired in 2020). Returns (cert, key).
pub(crate) fn other_cert(name: &str) -> (PathBuf, PathBuf) {
    let (c, _, _) = cert();
    let dir = c.parent().unwrap();
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
}

/// The test CA's certificate.
pub(crate) fn test_ca() -> PathBuf {
    cert().2
}

impl SmtpServer {
    pub fn new(dir: &Path, extra: &[&str]) -> SmtpServer {
        let (c, k, _) = cert();
        // The good certificate first: a `--cert`/`--key` in `extra` overrides it.
        let mut args: Vec<String> =
            vec!["--cert".into(), c.display().to_string(), "--key".into(), k.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        SmtpServer { child: None, port: free_port(), maildir: dir.join("maildir"), args }
    }

    pub fn start(dir: &Path, extra: &[&str]) -> SmtpServer {
        let mut s = SmtpServer::new(dir, extra);
        s.up();
        s
    }

    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn up(&mut self) {
        let child = Command::new(python())
            .arg(repo().join("tests/fixtures/smtp_server.py"))
            .args(["--port", &self.port.to_string(), "--maildir"])
            .arg(&self.maildir)
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the SMTP test server (scripts/deps.sh installs aiosmtpd)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    /// Accepted messages, parsed: (raw bytes, envelope JSON), oldest first.
    pub fn messages(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        let mut names: Vec<_> = std::fs::read_dir(&self.maildir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect())
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let env = std::fs::read(p.with_extension("json")).unwrap_or_default();
                (std::fs::read(&p).unwrap(), serde_json::from_slice(&env).unwrap_or_default())
            })
            .collect()
    }

    /// Waits (up to 30 s) until `n` messages are in the maildir.
    pub async fn wait_for(&self, n: usize, what: &'static str) {
        let maildir = self.maildir.clone();
        tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(30), what, || (count_eml(&maildir) >= n).then_some(()))
        })
        .await
        .unwrap();
    }

    pub fn configure(&self, c: &mut Config, tls: SmtpTls) {
        c.smtp.host = "localhost".into();
        c.smtp.port = Some(self.port);
        c.smtp.tls = tls;
        c.smtp.ca_file = Some(cert().2);
        c.smtp.username = Some(USER.into());
        c.smtp.password = Some(Secret::new(PASS));
        c.smtp.from = "edgewatch@node.example".into();
        c.smtp.to = vec!["ops@example.com".into()];
        c.smtp.timeout = Duration::from_secs(5);
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Messages in the maildir (each .eml has its envelope beside it: the fixture writes that first).
fn count_eml(maildir: &Path) -> usize {
    std::fs::read_dir(maildir)
        .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0)
}

/// A real clip (mp4 + still + sidecar) made once by the detector from a fixture video.
fn real_clip() -> (Vec<u8>, Vec<u8>, Sidecar) {
    static CLIP: OnceLock<(Vec<u8>, Vec<u8>, Sidecar)> = OnceLock::new();
    CLIP.get_or_init(|| {
        let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
        let dir = tempfile::tempdir().unwrap();
        let cfg = test_config(dir.path(), &video);
        // Its own runtime on its own thread: callers are async tests.
        let c2 = cfg.clone();
        let summary = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(edgewatch::detector::run(c2, CancellationToken::new())).unwrap()
        })
        .join()
        .unwrap();
        let id = &summary.events[0].event_id;
        let p = ClipPaths::new(&cfg.clip.spool_dir, id);
        (std::fs::read(&p.clip).unwrap(), std::fs::read(&p.still).unwrap(), spool::read_sidecar(&p.sidecar).unwrap())
    })
    .clone()
}

/// Writes a clip into `spool` by the detector's protocol (data first, sidecar renamed last).
pub(crate) fn put_clip(spool_dir: &Path, id: &str, camera: &str, archived: bool) -> PathBuf {
    let (mp4, jpg, mut side) = real_clip();
    side.event_id = id.into();
    side.camera = camera.into();
    side.clip_file = format!("{id}.mp4");
    side.still_file = format!("{id}.jpg");
    side.event_time = chrono::Utc::now();
    std::fs::create_dir_all(spool_dir).unwrap();
    let p = ClipPaths::new(spool_dir, id);
    spool::write_atomic(&p.clip, &mp4).unwrap();
    spool::write_atomic(&p.still, &jpg).unwrap();
    if archived {
        mark_archived(spool_dir, id);
    }
    spool::write_atomic(&p.sidecar, &serde_json::to_vec(&side).unwrap()).unwrap();
    p.clip
}

/// Writes an event's record and still by the detector's protocol (`spool::write_event`), as at
/// the decision: the event is open until its sidecar follows.
pub(crate) fn put_event(spool_dir: &Path, id: &str, camera: &str) {
    let (_, jpg, side) = real_clip();
    let now = chrono::Utc::now();
    let record = spool::EventRecord {
        event_id: id.into(),
        node: side.node.clone(),
        camera: camera.into(),
        event_time: now,
        media_time: 0.0,
        decided_at: now,
        score: 0.97,
        threshold: side.threshold,
        model_name: side.model_name.clone(),
        model_sha256: side.model_sha256.clone(),
        still_file: format!("{id}.jpg"),
    };
    std::fs::create_dir_all(spool_dir.join(spool::TMP_DIR)).unwrap();
    spool::write_event(spool_dir, &record, &jpg).unwrap();
}

pub(crate) fn mark_archived(spool_dir: &Path, id: &str) {
    let a = spool::Archived {
        clip_url: format!("s3://clips/test/{id}.mp4"),
        sidecar_url: format!("s3://clips/test/{id}.json"),
        archived_at: chrono::Utc::now(),
    };
    spool::write_atomic(&ClipPaths::new(spool_dir, id).archived, &serde_json::to_vec(&a).unwrap()).unwrap();
}

pub(crate) fn watch_config(dir: &Path) -> Config {
    let mut c = test_config(dir, Path::new("/unused.avi"));
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.archive.target = "s3://clips/test".into(); // the markers are written by the tests
    c.watch.retry_min = Duration::from_millis(200);
    c.watch.retry_max = Duration::from_secs(1);
    c.watch.min_gap = Duration::ZERO;
    c.watch.spool_min_free = bytesize::ByteSize::mib(1);
    c
}

/// A plain SMTP server (no TLS, no AUTH) with `extra` fault flags, and a watchdog config for it.
pub(crate) fn plain_smtp(dir: &Path, extra: &[&str]) -> (SmtpServer, Config) {
    let (mut server, cfg) = plain_smtp_down(dir, extra);
    server.up();
    (server, cfg)
}

/// As [`plain_smtp`], with the server not started yet (`up()` starts it).
pub(crate) fn plain_smtp_down(dir: &Path, extra: &[&str]) -> (SmtpServer, Config) {
    let server = SmtpServer::new(dir, extra);
    let mut cfg = watch_config(dir);
    server.configure(&mut cfg, SmtpTls::None);
    cfg.smtp.username = None;
    cfg.smtp.password = None;
    (server, cfg)
}

/// Waits, off the runtime, until the metric `name` served at `addr` reads `value`.
pub(crate) async fn wait_metric(addr: std::net::SocketAddr, name: &'static str, value: f64, what: &'static str) {
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), what, || (metric(addr, name) == value).then_some(()))
    })
    .await
    .unwrap();
}

/// Waits, off the runtime, until the spool holds no event: each one delivered and deleted.
pub(crate) async fn wait_spool_empty(spool_dir: &Path, limit: Duration, what: &'static str) {
    let dir = spool_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait_until(limit, what, || spool::events(&dir).unwrap().is_empty().then_some(()))
    })
    .await
    .unwrap();
}

pub(crate) fn header(raw: &[u8], name: &str) -> String {
    let parsed = mailparse::parse_mail(raw).unwrap();
    parsed.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case(name)).map(|h| h.get_value()).unwrap_or_default()
}

/// Every leaf part of a message: (content type, content id, body bytes).
pub(crate) fn parts(raw: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    fn walk(p: &mailparse::ParsedMail, out: &mut Vec<(String, String, Vec<u8>)>) {
        if p.subparts.is_empty() {
            let cid = p.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case("Content-ID")).map(|h| h.get_value());
            out.push((p.ctype.mimetype.clone(), cid.unwrap_or_default(), p.get_body_raw().unwrap()));
        }
        for s in &p.subparts {
            walk(s, out);
        }
    }
    let mut out = Vec::new();
    walk(&mailparse::parse_mail(raw).unwrap(), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_carries_the_clip_the_still_and_the_event_over_starttls_and_auth() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), &["--mode", "starttls", "--auth", &format!("{USER}:{PASS}")]);
    let mut cfg = watch_config(dir.path());
    server.configure(&mut cfg, SmtpTls::Starttls);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let clip = put_clip(&cfg.clip.spool_dir, "20260101T000000.000Z-cam0", "cam0", false);
    let clip_bytes = std::fs::read(&clip).unwrap();
    server.wait_for(1, "the alert").await;
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    let (raw, env) = &msgs[0];
    assert_eq!(env["tls"], true, "STARTTLS was used: {env}");
    assert_eq!(env["auth"], true, "AUTH was used: {env}");
    assert_eq!(env["to"], serde_json::json!(["ops@example.com"]));
    let subject = header(raw, "Subject");
    assert!(subject.contains("test-node/cam0") && subject.contains("score"), "{subject}");
    assert_eq!(header(raw, "X-Edgewatch-Event"), "20260101T000000.000Z-cam0");
    assert_eq!(header(raw, "Message-ID"), "<20260101T000000.000Z-cam0.test-node@edgewatch>");
    let parts = parts(raw);
    let mp4 = parts.iter().find(|p| p.0 == "video/mp4").expect("clip attached");
    assert_eq!(mp4.2, clip_bytes, "attachment is byte-identical to the clip");
    let still = parts.iter().find(|p| p.0 == "image/jpeg").expect("still inline");
    assert!(still.1.contains("still"), "inline still has a Content-ID: {:?}", still.1);
    let rgb = edgewatch::infer::decode_rgb(&still.2).expect("the still is a valid JPEG");
    assert_eq!((rgb.width, rgb.height), (320, 240));
    let text = String::from_utf8_lossy(&parts.iter().find(|p| p.0 == "text/plain").unwrap().2).into_owned();
    assert!(text.contains("Peak score") && text.contains("test-node/cam0"), "{text}");

    // Delivered but not archived: kept, once the watchdog has recorded the delivery and settled
    // it (a pass after the one that sent it). Archived: deleted.
    let sp = cfg.clip.spool_dir.clone();
    let addr = running.http_addr;
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "the delivery recorded and a pass after it", || {
            let d = edgewatch::watchdog::state::Delivery::load(&sp, "20260101T000000.000Z-cam0").ok()??;
            (d.finished() && metric(addr, "edgewatch_alert_queue_depth") == 0.0).then_some(())
        })
    })
    .await
    .unwrap();
    assert!(clip.exists());
    mark_archived(&cfg.clip.spool_dir, "20260101T000000.000Z-cam0");
    let spool_dir = cfg.clip.spool_dir.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), "deletion after archive", || {
            (std::fs::read_dir(&spool_dir).unwrap().flatten().filter(|e| e.path().is_file()).count() == 0).then_some(())
        })
    })
    .await
    .unwrap();
    let addr = running.http_addr;
    let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").1).await.unwrap();
    let complaints = promtool_check_metrics(&body);
    assert!(complaints.trim().is_empty(), "promtool: {complaints}\n{body}");
    assert!(
        body.contains("edgewatch_alerts_sent_total 1") && body.contains("edgewatch_clips_deleted_total 1"),
        "{body}"
    );
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_smtp_down_then_up_delivers_once() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut server = SmtpServer::new(dir.path(), &["--mode", "implicit", "--auth", &format!("{USER}:{PASS}")]);
    let mut cfg = watch_config(dir.path());
    server.configure(&mut cfg, SmtpTls::Implicit);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    put_clip(&cfg.clip.spool_dir, "20260101T000001.000Z-cam0", "cam0", true);
    let addr = running.http_addr;
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "network errors while the server is down", || {
            (metric(addr, "edgewatch_smtp_errors_total{class=\"network\"}") >= 2.0).then_some(())
        })
    })
    .await
    .unwrap();
    server.up();
    // Deleted: nothing is left that could be sent again, so the count is final.
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery and deletion").await;
    assert_eq!(server.messages().len(), 1);
    assert_eq!(server.messages()[0].1["tls"], true);
    shutdown.cancel();
    let s = running.wait().await.unwrap();
    assert_eq!((s.sent, s.deleted), (1, 1));
}

/// Clips that waited out an outage go as soon as the relay answers again, not when their own
/// backoff (here at least 30 s) runs out; while it is down, one pass tries it once, not per clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_waiting_on_a_down_relay_go_as_soon_as_it_answers() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut cfg) = plain_smtp_down(dir.path(), &[]);
    cfg.watch.retry_min = Duration::from_secs(60);
    cfg.watch.retry_max = Duration::from_secs(600);
    for i in 0..3 {
        put_clip(&cfg.clip.spool_dir, &format!("20260101T00000{i}.000Z-cam0"), "cam0", true);
    }
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let addr = running.http_addr;
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "a network error", || {
            (metric(addr, "edgewatch_smtp_errors_total{class=\"network\"}") >= 1.0).then_some(())
        })
    })
    .await
    .unwrap();
    // The end of that pass (its gauges are set last): three clips waiting, one attempt made;
    // the other two waited without trying.
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "the pass to end with three queued", || {
            (metric(addr, "edgewatch_alert_queue_depth") == 3.0).then_some(())
        })
    })
    .await
    .unwrap();
    assert_eq!(metric(addr, "edgewatch_smtp_errors_total{class=\"network\"}"), 1.0);
    server.up();
    // A new clip wakes the watchdog (inotify); it is delivered, and the three waiting ones follow
    // at once although their backoff has at least 30 s to run.
    let t0 = std::time::Instant::now();
    put_clip(&cfg.clip.spool_dir, "20260101T000009.000Z-cam0", "cam0", true);
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(25), "all four delivered and deleted").await;
    assert!(t0.elapsed() < Duration::from_secs(25));
    let mut ids: Vec<String> = server.messages().iter().map(|(raw, _)| header(raw, "X-Edgewatch-Event")).collect();
    ids.sort();
    assert_eq!(ids.len(), 4, "{ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 4, "each clip exactly once");
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_answering_is_timed_out_and_the_clip_delivered_once() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    // The relay takes the whole first message and then says nothing for 60 s: without a bound on
    // each step the watchdog would wait all that time on one send.
    let (server, mut cfg) = plain_smtp(dir.path(), &["--stall-once", "60"]);
    cfg.smtp.timeout = Duration::from_secs(2);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let addr = running.http_addr;
    let t0 = std::time::Instant::now();
    put_clip(&cfg.clip.spool_dir, "20260101T000004.000Z-cam0", "cam0", true);
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery after the stall").await;
    assert!(t0.elapsed() < Duration::from_secs(30), "the stalled send was not cut short");
    assert!(metric(addr, "edgewatch_smtp_errors_total{class=\"network\"}") >= 1.0);
    let ids: Vec<String> = server.messages().iter().map(|(raw, _)| header(raw, "X-Edgewatch-Event")).collect();
    assert_eq!(ids, ["20260101T000004.000Z-cam0"], "delivered exactly once");
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_transfer_is_retried_and_delivered_once() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &["--drop-once", "--tempfail", "1"]);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    put_clip(&cfg.clip.spool_dir, "20260101T000002.000Z-cam0", "cam0", true);
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery").await;
    assert_eq!(server.messages().len(), 1);
    let addr = running.http_addr;
    let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").1).await.unwrap();
    let errors = |class: &str| sample(&body, &format!("edgewatch_smtp_errors_total{{class=\"{class}\"}}"));
    // The dropped connection is a network error and the 451 a temporary one; neither gives up on
    // the recipient, and the message arrives once.
    assert!(errors("network") >= 1.0 && errors("temporary") >= 1.0, "{body}");
    assert_eq!(errors("permanent"), 0.0, "{body}");
    assert!(body.contains("edgewatch_alerts_failed_total 0"), "{body}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_rejection_ends_in_failed_with_the_metric() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &["--reject-rcpt", "gone@example.com"]);
    cfg.smtp.to = vec!["ops@example.com".into(), "gone@example.com".into()];
    cfg.watch.permanent_attempts = 2;
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let id = "20260101T000003.000Z-cam0";
    put_clip(&cfg.clip.spool_dir, id, "cam0", false);
    let failed = cfg.clip.spool_dir.join("failed");
    // Failed for good, but not archived yet: it stays where the archiver reads it (the archiver
    // drops an event whose clip has left the spool, so failed/ first meant never archived).
    let addr = running.http_addr;
    wait_metric(addr, "edgewatch_smtp_errors_total{class=\"permanent\"}", 2.0, "the permanent rejections").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!failed.join(format!("{id}.json")).exists(), "moved to failed/ before it was archived");
    assert_eq!(spool::complete_clips(&cfg.clip.spool_dir).unwrap(), vec![id.to_string()]);
    // The detector's archiver writes the marker; then the event moves, marker and all.
    mark_archived(&cfg.clip.spool_dir, id);
    let f2 = failed.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "the clip in failed/", || {
            f2.join(format!("{id}.json")).exists().then_some(())
        })
    })
    .await
    .unwrap();
    for ext in ["mp4", "jpg", "json", "archived", "delivery", "reason"] {
        assert!(failed.join(format!("{id}.{ext}")).exists(), "failed/{id}.{ext}");
    }
    assert!(spool::complete_clips(&cfg.clip.spool_dir).unwrap().is_empty());
    // The good recipient got it once; the rejected one never.
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1["to"], serde_json::json!(["ops@example.com"]));
    let (failed_m, perm) = tokio::task::spawn_blocking(move || {
        (
            metric(addr, "edgewatch_alerts_failed_total"),
            metric(addr, "edgewatch_smtp_errors_total{class=\"permanent\"}"),
        )
    })
    .await
    .unwrap();
    assert_eq!((failed_m, perm), (1.0, 2.0));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_file_without_the_rename_protocol_is_never_sent() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &[]);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let spool_dir = cfg.clip.spool_dir.clone();
    // A clip without a sidecar (still being written), and a sidecar written in place, half done.
    std::fs::write(spool_dir.join("20260101T000004.000Z-cam0.mp4"), b"partial").unwrap();
    let (_, _, side) = real_clip();
    let json = serde_json::to_vec(&side).unwrap();
    std::fs::write(spool_dir.join("20260101T000005.000Z-cam0.json"), &json[..json.len() / 2]).unwrap();
    // The half-written sidecar is not an alert; it is kept for a human in failed/. That move is
    // the sign a pass went over both files; only then is "nothing sent" a finding.
    let moved = spool_dir.join("failed/20260101T000005.000Z-cam0.json");
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "the half sidecar moved to failed/", || moved.exists().then_some(()))
    })
    .await
    .unwrap();
    assert!(server.messages().is_empty());
    assert!(spool_dir.join("20260101T000004.000Z-cam0.mp4").exists(), "never deleted either");
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_is_rate_limited_and_summarised() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.watch.min_gap = Duration::from_secs(2);
    cfg.watch.max_per_hour = 4;
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    // 100 events in about 10 s (a storm compressed in time; the limits are scaled to match).
    for i in 0..100 {
        put_clip(&cfg.clip.spool_dir, &format!("20260101T0001{:02}.{:03}Z-cam0", i / 10, i % 10), "cam0", true);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "every clip handled").await;
    let msgs = server.messages();
    assert_eq!(msgs.len(), 4, "max-per-hour = 4");
    let summarised: usize = msgs
        .iter()
        .map(|(raw, _)| {
            let text =
                String::from_utf8_lossy(&parts(raw).iter().find(|p| p.0 == "text/plain").unwrap().2).into_owned();
            text.lines()
                .find_map(|l| l.strip_suffix(" earlier event(s) were not emailed (alert rate limit):"))
                .map_or(0, |n| n.parse().unwrap())
        })
        .sum();
    let addr = running.http_addr;
    let (suppressed, pending) = tokio::task::spawn_blocking(move || {
        (metric(addr, "edgewatch_alerts_suppressed_total"), metric(addr, "edgewatch_alerts_suppressed_pending"))
    })
    .await
    .unwrap();
    assert_eq!(suppressed, 96.0);
    assert!(summarised > 0, "later emails carry the summary");
    assert_eq!(summarised as f64 + pending, 96.0, "every suppressed event is summarised or still pending");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_limits_evict_only_delivered_and_archived_clips() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.watch.keep_delivered = true;
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let sp = cfg.clip.spool_dir.clone();
    put_clip(&sp, "20260101T000010.000Z-cam0", "cam0", true);
    put_clip(&sp, "20260101T000011.000Z-cam0", "cam0", true);
    put_clip(&sp, "20260101T000012.000Z-cam0", "cam0", false); // delivered, not archived
    server.wait_for(3, "three alerts").await;
    shutdown.cancel();
    running.wait().await.unwrap();
    assert_eq!(spool::complete_clips(&sp).unwrap().len(), 3, "kept while under the limits");

    // Over the size limit: the two archived ones go, oldest first; the unarchived one stays.
    cfg.watch.spool_max_size = bytesize::ByteSize::b(1);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let sp2 = sp.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), "eviction", || {
            (spool::complete_clips(&sp2).unwrap().len() == 1).then_some(())
        })
    })
    .await
    .unwrap();
    assert_eq!(spool::complete_clips(&sp).unwrap(), vec!["20260101T000012.000Z-cam0".to_string()]);
    let addr = running.http_addr;
    // The gauges are set at the end of the pass that evicted: wait for them.
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), "eviction metrics (2 evicted, still over the limit)", || {
            let got = (metric(addr, "edgewatch_spool_evicted_total"), metric(addr, "edgewatch_spool_over_limit"));
            (got == (2.0, 1.0)).then_some(())
        })
    })
    .await
    .unwrap();
    assert_eq!(spool::complete_clips(&sp).unwrap(), vec!["20260101T000012.000Z-cam0".to_string()]);
    shutdown.cancel();
}

/// A delivered clip waiting for its archive (S3 slow or down) costs nothing until the marker
/// comes: the watchdog's own reads of the spool must not wake it again (inotify reports opens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_waiting_for_its_archive_leaves_the_watchdog_idle() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &[]);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let sp = cfg.clip.spool_dir.clone();
    let id = "20260101T000013.000Z-cam0";
    put_clip(&sp, id, "cam0", false);
    server.wait_for(1, "the alert").await;
    let addr = running.http_addr;
    let scans = move || metric(addr, "edgewatch_spool_scans_total");
    // Let the pass that delivered it (and the one its own record's write may cause) finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = tokio::task::spawn_blocking(scans).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = tokio::task::spawn_blocking(scans).await.unwrap() - before;
    assert!(idle <= 1.0, "{idle} passes over the spool in 2 s while nothing changed");
    assert_eq!(spool::complete_clips(&sp).unwrap(), vec![id.to_string()], "kept until archived");
    // The marker wakes it and the clip goes.
    mark_archived(&sp, id);
    wait_spool_empty(&sp, Duration::from_secs(10), "the delete after the archive").await;
    assert_eq!(server.messages().len(), 1, "one alert");
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// SIGKILL at each step of the delivery state machine, then a restart: never lost, never a
/// second message (the accepted-but-unrecorded window resends the same Message-ID).
#[cfg(feature = "fault-injection")]
#[test]
fn sigkill_at_each_step_never_loses_and_never_duplicates() {
    for step in ["before-send", "after-accept", "after-record", "mid-delete", "late-delete"] {
        let dir = tempfile::tempdir().unwrap();
        let server = SmtpServer::start(dir.path(), &[]);
        let mut cfg = watch_config(dir.path());
        server.configure(&mut cfg, SmtpTls::None);
        let conf = dir.path().join("edgewatch.toml");
        std::fs::write(
            &conf,
            format!(
                "node = \"kill\"\n[http]\nlisten = \"127.0.0.1:0\"\n[clip]\nspool-dir = \"{}\"\n[archive]\ntarget = \"s3://clips/test\"\n\
                 [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"edgewatch@node.example\"\nto = [\"ops@example.com\"]\n\
                 [watch]\nretry-min = \"200ms\"\nretry-max = \"1s\"\nspool-min-free = \"1 MiB\"\n",
                cfg.clip.spool_dir.display(),
                server.port
            ),
        )
        .unwrap();
        let id = "20260101T000020.000Z-cam0";
        put_clip(&cfg.clip.spool_dir, id, "cam0", true);
        let run = |crash: Option<&str>| -> Reaped {
            let mut c = Command::new(bin());
            c.args(["--config"]).arg(&conf).arg("watch").stdout(Stdio::null());
            if let Some(s) = crash {
                c.env("EW_TEST_CRASH_AT", s);
            }
            Reaped(c.spawn().unwrap())
        };
        let status = {
            let mut child = run(Some(step));
            wait_until(Duration::from_secs(30), "the crash", || child.try_wait().unwrap())
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{step}: killed by SIGKILL");
        let mut child = run(None);
        let sp = cfg.clip.spool_dir.clone();
        wait_until(Duration::from_secs(30), "delivery and deletion after restart", || {
            std::fs::read_dir(&sp).unwrap().flatten().all(|e| !e.path().is_file()).then_some(())
        });
        let _ = child.kill();
        let _ = child.wait();
        let msgs = server.messages();
        let ids: std::collections::BTreeSet<String> = msgs.iter().map(|(raw, _)| header(raw, "Message-ID")).collect();
        assert_eq!(ids.len(), 1, "{step}: one message as seen by the recipient");
        let expected_copies = if step == "after-accept" { 2 } else { 1 };
        assert_eq!(msgs.len(), expected_copies, "{step}: copies on the server");
    }
}

/// Polling (filesystems without inotify) finds clips too, at its interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_delivers() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.watch.mode = edgewatch::config::WatchMode::Poll;
    cfg.watch.poll_interval = Duration::from_millis(300);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    put_clip(&cfg.clip.spool_dir, "20260101T000030.000Z-cam0", "cam0", true);
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(20), "delivery by polling").await;
    assert_eq!(server.messages().len(), 1);
    let addr = running.http_addr;
    let mode = tokio::task::spawn_blocking(move || metric(addr, "edgewatch_watch_mode{mode=\"poll\"}")).await.unwrap();
    assert_eq!(mode, 1.0);
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// A clip over `smtp.max-attachment` waits for its archive, then goes out as a presigned S3 link
/// (signed for the real s3s-fs server, which checks signatures) that downloads the very clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_over_the_attachment_limit_is_sent_as_a_presigned_link() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    s3.mkbucket("clips");
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    s3.configure(&mut cfg);
    cfg.smtp.max_attachment = bytesize::ByteSize::kib(1);
    cfg.smtp.link_expiry = Duration::from_secs(600);
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let id = "20260101T000040.000Z-cam0";
    let clip = put_clip(&cfg.clip.spool_dir, id, "cam0", false);
    let clip_bytes = std::fs::read(&clip).unwrap();

    // Too big to attach and not archived yet: nothing is sent. A pass has seen it once the
    // queue gauge (set at the end of each pass) counts it.
    let addr = running.http_addr;
    wait_metric(addr, "edgewatch_alert_queue_depth", 1.0, "a pass over the clip").await;
    assert!(server.messages().is_empty(), "sent before there was anything to link to");

    // The detector's archiver would upload and then write the marker; do the same.
    let client = edgewatch::s3::S3Client::new(&cfg.s3).await;
    client
        .put("clips", &format!("test/{id}.mp4"), bytes::Bytes::from(clip_bytes.clone()), "video/mp4", 1 << 30, 8 << 20)
        .await
        .unwrap();
    mark_archived(&cfg.clip.spool_dir, id);
    server.wait_for(1, "the alert with a link").await;
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    let parts = parts(&msgs[0].0);
    assert!(parts.iter().all(|p| p.0 != "video/mp4"), "the clip must not be attached");
    let text = String::from_utf8_lossy(&parts.iter().find(|p| p.0 == "text/plain").unwrap().2).into_owned();
    let url = text
        .split_once("download it here: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no link in the message: {text}"))
        .to_string();
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=600"), "not presigned: {url}");
    // GET a presigned URL as any mail reader would (the test endpoint is plain HTTP).
    let download = |url: String| {
        tokio::task::spawn_blocking(move || {
            let rest = url.strip_prefix("http://").expect("the test endpoint is plain HTTP");
            let (host, path) = rest.split_at(rest.find('/').unwrap());
            http_get_bytes(host, path)
        })
    };
    let (status, body) = download(url.clone()).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, clip_bytes, "the link downloads the clip");

    // A tampered signature is refused: the server really checks it.
    let (status, _) = download(url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000")).await.unwrap();
    assert_eq!(status, 403);
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// A corrupt rate-limiter state (only damage from outside: it is written atomically) starts the
/// limits afresh instead of stopping the watchdog at every start, which would send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_rate_limiter_state_does_not_stop_the_alerts() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &[]);
    let state = edgewatch::watchdog::state::Limiter::path(&cfg.clip.spool_dir);
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, b"{").unwrap();
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    put_clip(&cfg.clip.spool_dir, "20260101T000042.000Z-cam0", "cam0", true);
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery despite the corrupt state").await;
    assert_eq!(server.messages().len(), 1);
    shutdown.cancel();
    running.wait().await.unwrap();
    // Written afresh: the next start reads it.
    assert!(edgewatch::watchdog::state::Limiter::load(&cfg.clip.spool_dir).is_ok());
}

/// A corrupt delivery state (only damage from outside: it is written atomically) starts the
/// event's delivery again instead of failing its pass forever, which would send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_delivery_state_does_not_stop_the_event() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &[]);
    let id = "20260101T000043.000Z-cam0";
    put_clip(&cfg.clip.spool_dir, id, "cam0", true);
    std::fs::write(edgewatch::watchdog::state::Delivery::path(&cfg.clip.spool_dir, id), b"{").unwrap();
    let shutdown = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery despite the corrupt state").await;
    assert_eq!(server.messages().len(), 1);
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// A clip over `smtp.max-attachment` with nothing to link to ever (no archive configured, or an
/// archiver that could only write an empty marker on a full spool) still goes out, saying so,
/// and the event is then deleted: before, it waited for a link that never came, so the email
/// never went and the spool kept the event for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_over_the_attachment_limit_with_no_link_to_come_still_goes_out() {
    init_logs();
    for empty_marker in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (server, mut cfg) = plain_smtp(dir.path(), &[]);
        if !empty_marker {
            cfg.archive.target = String::new();
        }
        cfg.smtp.max_attachment = bytesize::ByteSize::kib(1);
        let id = "20260101T000041.000Z-cam0";
        put_clip(&cfg.clip.spool_dir, id, "cam0", false);
        if empty_marker {
            // What the archiver writes when the spool is too full for the marker's JSON.
            spool::write_atomic(&ClipPaths::new(&cfg.clip.spool_dir, id).archived, b"").unwrap();
        }
        let shutdown = CancellationToken::new();
        let running = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
        wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "the oversized clip delivered and deleted")
            .await;
        let msgs = server.messages();
        assert_eq!(msgs.len(), 1, "empty marker {empty_marker}");
        let parts = parts(&msgs[0].0);
        assert!(parts.iter().all(|p| p.0 != "video/mp4"), "the clip must not be attached");
        let text = String::from_utf8_lossy(&parts.iter().find(|p| p.0 == "text/plain").unwrap().2).into_owned();
        assert!(text.contains("too large to attach, and there is no archive link"), "{text}");
        shutdown.cancel();
        running.wait().await.unwrap();
    }
}

/// The rate limiter's state outlives the watchdog: restarted within `watch.min-gap` of an alert,
/// it still holds the camera's next event back, and the first alert after the gap lists the
/// events held back before and after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_and_its_summary_survive_a_restart() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.watch.min_gap = Duration::from_secs(4);
    let sp = cfg.clip.spool_dir.clone();
    let start = |cfg: Config| async move {
        let stop = CancellationToken::new();
        (edgewatch::watchdog::start(cfg, stop.clone()).await.unwrap(), stop)
    };
    let (wd, stop) = start(cfg.clone()).await;
    put_clip(&sp, "20260101T000100.000Z-cam0", "cam0", true);
    wait_spool_empty(&sp, Duration::from_secs(30), "the first alert").await;
    stop.cancel();
    wd.wait().await.unwrap();
    // Restarted within the gap: held back, and recorded as such.
    let (wd, stop) = start(cfg.clone()).await;
    put_clip(&sp, "20260101T000101.000Z-cam0", "cam0", true);
    wait_spool_empty(&sp, Duration::from_secs(30), "the held-back event settled").await;
    assert_eq!(server.messages().len(), 1, "held back across the restart");
    stop.cancel();
    wd.wait().await.unwrap();
    // After the gap, a third start: the next event's email lists the one held back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (wd, stop) = start(cfg.clone()).await;
    put_clip(&sp, "20260101T000105.000Z-cam0", "cam0", true);
    wait_spool_empty(&sp, Duration::from_secs(30), "the next alert").await;
    stop.cancel();
    wd.wait().await.unwrap();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2);
    let text =
        String::from_utf8_lossy(&parts(&msgs[1].0).into_iter().find(|p| p.0 == "text/plain").unwrap().2).into_owned();
    assert!(text.contains("20260101T000101.000Z-cam0") && text.contains("not emailed (alert rate limit)"), "{text}");
}

/// Decided events go before closed ones: with clip emails queued behind a slow relay, an event
/// decided meanwhile has its first alert at the server before the queued clip emails are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_decision_goes_before_queued_clip_emails() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &["--slow", "1"]);
    let sp = cfg.clip.spool_dir.clone();
    for i in 0..4 {
        put_clip(&sp, &format!("20260101T00020{i}.000Z-cam0"), "cam0", true);
    }
    let stop = CancellationToken::new();
    let wd = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    server.wait_for(1, "the first clip email").await;
    let decided = "20260101T000210.000Z-cam1";
    put_event(&sp, decided, "cam1");
    server.wait_for(5, "every email").await;
    let order: Vec<String> = server.messages().iter().map(|(raw, _)| header(raw, "X-Edgewatch-Event")).collect();
    let at = order.iter().position(|e| e == decided).unwrap();
    assert!(at <= 2, "the first alert went out as soon as the email in flight was done: {order:?}");
    stop.cancel();
    wd.wait().await.unwrap();
}

/// One connection to the relay serves alert after alert (the connection is kept between them);
/// a connection the relay drops is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_several_alerts() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, cfg) = plain_smtp(dir.path(), &[]);
    let stop = CancellationToken::new();
    let wd = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    for i in 0..3 {
        put_clip(&cfg.clip.spool_dir, &format!("20260101T00030{i}.000Z-cam0"), "cam0", true);
        server.wait_for(i + 1, "the alert").await;
    }
    let peers: Vec<String> = server.messages().iter().map(|(_, env)| env["peer"].to_string()).collect();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| p == &peers[0] && p != "null"), "one connection: {peers:?}");
    stop.cancel();
    wd.wait().await.unwrap();
}

/// Rate limits count events, not emails: in a storm of decided events (records first, as the
/// detector writes them), one held back gets neither its first alert nor its clip email, and
/// the next first alert of that camera lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_decided_event_gets_neither_email() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.watch.min_gap = Duration::from_secs(3);
    let sp = cfg.clip.spool_dir.clone();
    let stop = CancellationToken::new();
    let wd = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    let ids = ["20260101T000400.000Z-cam0", "20260101T000401.000Z-cam0", "20260101T000405.000Z-cam0"];
    for (i, id) in ids.iter().enumerate() {
        if i == 2 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        put_event(&sp, id, "cam0");
        put_clip(&sp, id, "cam0", true);
    }
    wait_spool_empty(&sp, Duration::from_secs(30), "every event settled").await;
    stop.cancel();
    wd.wait().await.unwrap();
    let msgs = server.messages();
    let of = |id: &str| msgs.iter().filter(|(raw, _)| header(raw, "X-Edgewatch-Event") == id).count();
    assert_eq!((of(ids[0]), of(ids[1]), of(ids[2])), (2, 0, 2), "first alert and clip, nothing, first alert and clip");
    let first = msgs
        .iter()
        .find(|(raw, _)| header(raw, "X-Edgewatch-Event") == ids[2] && header(raw, "X-Edgewatch-Alert") == "snapshot")
        .unwrap();
    let text =
        String::from_utf8_lossy(&parts(&first.0).into_iter().find(|p| p.0 == "text/plain").unwrap().2).into_owned();
    assert!(text.contains(ids[1]), "the held-back event is listed in the next first alert: {text}");
}
