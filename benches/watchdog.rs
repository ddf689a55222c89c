//! Alert latency: from the detector's rename of a clip's sidecar into the spool to the SMTP
//! server's "250 OK", over 200 clips, with inotify next to a 3-second polling watcher (the
//! published design). Same binary, same SMTP server (aiosmtpd on loopback), one run.
//!
//! The server stamps MAIL FROM and the end of DATA (wall clock, same machine), so the total splits
//! into the watchdog's part (rename -> MAIL FROM: notice, read, build the message, connect) and
//! the transfer (MAIL FROM -> end of DATA: RCPT, the bytes, and aiosmtpd parsing them line by line
//! in Python, which a production MTA does far faster).
//!
//! `cargo bench --bench watchdog` (needs scripts/deps.sh test: aiosmtpd and a fixture clip).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use edgewatch::config::{Config, SmtpTls, WatchMode};
use edgewatch::spool::{self, ClipPaths, Sidecar};
use tokio_util::sync::CancellationToken;

const CLIPS: usize = 200;

fn eml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Per clip, in seconds: (rename -> MAIL FROM, MAIL FROM -> end of DATA).
#[derive(Default)]
struct Series {
    reaction: Vec<f64>,
    transfer: Vec<f64>,
    total: Vec<f64>,
}

impl Series {
    fn sort(&mut self) {
        for v in [&mut self.reaction, &mut self.transfer, &mut self.total] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
    }
}

async fn measure(mode: WatchMode, poll: Duration, clip: &(Vec<u8>, Vec<u8>, Sidecar), n: usize) -> Series {
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
    let mut out = Series::default();
    let staging = cfg.clip.spool_dir.join(".bench");
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..n {
        let id = format!("20260101T{:06}.000Z-cam0", i);
        let p = ClipPaths::new(&cfg.clip.spool_dir, &id);
        let mut side = clip.2.clone();
        side.event_id = id.clone();
        spool::write_atomic(&p.clip, &clip.0).unwrap();
        spool::write_atomic(&p.still, &clip.1).unwrap();
        let before = eml_count(&maildir);
        // The detector's protocol, with the clock started at the rename itself.
        let staged = staging.join(format!("{id}.json"));
        spool::write_file_synced(&staged, &serde_json::to_vec(&side).unwrap()).unwrap();
        let t0 = now_unix();
        std::fs::rename(&staged, &p.sidecar).unwrap();
        spool::sync_dir(&cfg.clip.spool_dir).unwrap();
        while eml_count(&maildir) == before {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let env: serde_json::Value = loop {
            let f = maildir.join(format!("{:05}.json", before + 1));
            match std::fs::read(&f).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                Some(v) => break v,
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        let (t_mail, t_data) = (env["t_mail"].as_f64().unwrap(), env["t_data"].as_f64().unwrap());
        out.reaction.push(t_mail - t0);
        out.transfer.push(t_data - t_mail);
        out.total.push(t_data - t0);
        // Spread arrivals over the polling period, as real events are.
        if mode == WatchMode::Poll {
            tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 100)).await;
        }
    }
    stop.cancel();
    running.wait().await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
    out.sort();
    out
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
    let inotify = rt.block_on(measure(WatchMode::Inotify, Duration::from_secs(3), &clip, CLIPS));
    let poll = rt.block_on(measure(WatchMode::Poll, Duration::from_secs(3), &clip, n_poll));
    let ms = |v: f64| v * 1e3;
    println!(
        "watchdog latency: sidecar rename -> SMTP 250 OK, {} clips (polling: {}) of {:.1} MB each, loopback aiosmtpd",
        inotify.total.len(),
        poll.total.len(),
        clip.0.len() as f64 / 1e6
    );
    let row = |name: &str, v: &[f64]| {
        println!("  {name:<34} median {:8.1} ms   p99 {:8.1} ms", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)))
    };
    row("inotify: rename -> MAIL FROM", &inotify.reaction);
    row("inotify: MAIL FROM -> end of DATA", &inotify.transfer);
    row("inotify: total (rename -> 250)", &inotify.total);
    row("poll 3 s: rename -> MAIL FROM", &poll.reaction);
    row("poll 3 s: total (rename -> 250)", &poll.total);
    println!(
        "  watchdog's part (rename -> MAIL FROM): p99 {:.1} ms (target < 100 ms); median ratio poll/inotify {:.0}x (target >= 10x)",
        ms(percentile(&inotify.reaction, 0.99)),
        percentile(&poll.reaction, 0.5) / percentile(&inotify.reaction, 0.5)
    );
    println!(
        "  end to end incl. transfer: median ratio poll/inotify {:.1}x",
        percentile(&poll.total, 0.5) / percentile(&inotify.total, 0.5)
    );
}
