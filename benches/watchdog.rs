//! Alert latency: from the detector's rename of a clip's sidecar into the spool to the SMTP
//! server's "250 OK", over 200 clips, with inotify next to a 3-second polling watcher (the
//! published design). Same binary, same SMTP server (aiosmtpd on loopback), one run.
//!
//! `cargo bench --bench watchdog` (needs scripts/deps.sh test: aiosmtpd and a fixture clip).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgewatch::config::{Config, SmtpTls, WatchMode};
use edgewatch::spool::{self, ClipPaths, Sidecar};
use tokio_util::sync::CancellationToken;

const CLIPS: usize = 200;

fn eml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(mode: WatchMode, poll: Duration, clip: &(Vec<u8>, Vec<u8>, Sidecar)) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let maildir = dir.path().join("maildir");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut server = Command::new("/opt/edgewatch-test-venv/bin/python")
        .arg(root.join("tests/fixtures/smtp_server.py"))
        .args(["--port", &port.to_string(), "--maildir"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .spawn()
        .expect("aiosmtpd (scripts/deps.sh test)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cfg = Config { node: "bench".into(), ..Config::default() };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.clip.spool_dir = dir.path().join("spool");
    cfg.smtp.host = "127.0.0.1".into();
    cfg.smtp.port = Some(port);
    cfg.smtp.tls = SmtpTls::None;
    cfg.smtp.to = vec!["ops@example.com".into()];
    cfg.watch.mode = mode;
    cfg.watch.poll_interval = poll;
    cfg.watch.min_gap = Duration::ZERO;
    cfg.watch.max_per_hour = 100_000;
    cfg.watch.spool_min_free = bytesize::ByteSize::mib(1);
    std::fs::create_dir_all(&cfg.clip.spool_dir).unwrap();
    let stop = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    let mut lat = Vec::new();
    for i in 0..CLIPS {
        let id = format!("20260101T{:06}.000Z-cam0", i);
        let p = ClipPaths::new(&cfg.clip.spool_dir, &id);
        let mut side = clip.2.clone();
        side.event_id = id.clone();
        spool::write_atomic(&p.clip, &clip.0).unwrap();
        spool::write_atomic(&p.still, &clip.1).unwrap();
        let before = eml_count(&maildir);
        let t0 = Instant::now();
        spool::write_atomic(&p.sidecar, &serde_json::to_vec(&side).unwrap()).unwrap();
        while eml_count(&maildir) == before {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lat.push(t0.elapsed());
        // Spread arrivals over the polling period, as real events are.
        if mode == WatchMode::Poll {
            tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 100)).await;
        }
    }
    stop.cancel();
    running.wait().await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
    lat.sort();
    lat
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // A real clip from the bundled demo video through the detector.
    let dir = tempfile::tempdir().unwrap();
    let clip = rt.block_on(async {
        let opts = edgewatch::demo::DemoOptions { out: dir.path().to_path_buf(), realtime: false, video: None };
        let (cfg, s) = edgewatch::demo::run(opts, CancellationToken::new()).await.unwrap();
        let p = ClipPaths::new(&cfg.clip.spool_dir, &s.events[0].event_id);
        (std::fs::read(&p.clip).unwrap(), std::fs::read(&p.still).unwrap(), spool::read_sidecar(&p.sidecar).unwrap())
    });
    let n_poll: usize = std::env::var("BENCH_POLL_CLIPS").ok().and_then(|v| v.parse().ok()).unwrap_or(CLIPS);
    let inotify = rt.block_on(measure(WatchMode::Inotify, Duration::from_secs(3), &clip));
    let poll = rt.block_on(measure(WatchMode::Poll, Duration::from_secs(3), &clip));
    let poll = &poll[..n_poll.min(poll.len())];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "watchdog latency: sidecar rename -> SMTP 250 OK, {} clips of {:.1} MB each, loopback aiosmtpd",
        inotify.len(),
        clip.0.len() as f64 / 1e6
    );
    println!(
        "  inotify:        median {:8.1} ms   p99 {:8.1} ms   (target p99 < 100 ms)",
        ms(percentile(&inotify, 0.5)),
        ms(percentile(&inotify, 0.99))
    );
    println!(
        "  poll every 3 s: median {:8.1} ms   p99 {:8.1} ms",
        ms(percentile(poll, 0.5)),
        ms(percentile(poll, 0.99))
    );
    println!(
        "  median ratio poll/inotify: {:.0}x (target >= 10x)",
        percentile(poll, 0.5).as_secs_f64() / percentile(&inotify, 0.5).as_secs_f64()
    );
}
