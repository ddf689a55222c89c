//! Alert latency: from the detector's rename of a clip's sidecar into the spool to the SMTP
//! server's "250 OK", over 200 clips, with inotify next to a 3-second polling watcher (the
//! published design). Same binary, same SMTP server, one run.
//!
//! The end of the path is the watchdog's own record of the 250 (`accepted_at`, written right
//! after the server answered), so it is the same clock for every server. With aiosmtpd the server
//! also stamps MAIL FROM and the end of DATA, which splits the total into the watchdog's part
//! (rename -> MAIL FROM: notice, read, build the message, connect) and the transfer (aiosmtpd
//! parses DATA line by line in Python). `BENCH_SMTP=127.0.0.1:PORT` adds the same measurement
//! against a production MTA listening there (bench/postfix.sh starts a private Postfix).
//! Arrivals are spread evenly over the polling interval, as real events are.
//!
//! Against an external MTA the run ends with its floor: the same message, built and dot-stuffed
//! in advance, sent by a minimal client on one connection with the same arrival spread. No
//! client can beat that; the watchdog's figures minus it are the watchdog's own cost.
//!
//! `cargo bench --bench watchdog` (needs scripts/deps.sh test: aiosmtpd and a fixture clip).
//! `BENCH_SKIP_AIOSMTPD=1` measures the external MTA alone.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use edgewatch::config::{Config, SmtpTls, WatchMode};
use edgewatch::spool::{self, ClipPaths, Sidecar};
use edgewatch::watchdog::state::{Delivery, Part};
use tokio_util::sync::CancellationToken;

#[path = "support/mod.rs"]
mod support;
use support::{percentile, start_aiosmtpd};

const CLIPS: usize = 200;
const POLL: Duration = Duration::from_secs(3);

/// The pause before the next event: evenly spread points of the polling interval.
fn gap(i: usize) -> Duration {
    Duration::from_millis((i as u64 * 1237) % POLL.as_millis() as u64)
}

/// SMTP's transparency rule (a line starting with '.' gets another), then the end of DATA.
fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    let mut line_start = true;
    for &b in msg {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

/// The MTA's floor: MAIL FROM -> 250 for a ready-made payload on one plain connection, seconds.
fn mta_floor(port: u16, payload: &[u8], n: usize) -> Vec<f64> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("the MTA");
    s.set_nodelay(true).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = |want: &str| {
        let mut l = String::new();
        // Multi-line replies ("250-...") end with a line whose fourth byte is a space.
        while l.len() < 4 || l.as_bytes()[3] == b'-' {
            l.clear();
            r.read_line(&mut l).unwrap();
        }
        assert!(l.starts_with(want), "MTA said {l:?}, expected {want}");
    };
    reply("220");
    w.write_all(b"EHLO bench.local\r\n").unwrap();
    reply("250");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        for (cmd, want) in [
            ("MAIL FROM:<edgewatch@localhost>\r\n", "250"),
            ("RCPT TO:<ops@example.com>\r\n", "250"),
            ("DATA\r\n", "354"),
        ] {
            w.write_all(cmd.as_bytes()).unwrap();
            reply(want);
        }
        w.write_all(payload).unwrap();
        reply("250");
        out.push(t0.elapsed().as_secs_f64());
        std::thread::sleep(gap(i));
    }
    let _ = w.write_all(b"QUIT\r\n");
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    /// tests/fixtures/smtp_server.py, started here; stamps MAIL FROM and the end of DATA.
    Aiosmtpd,
    /// Whatever listens on this loopback port (bench/postfix.sh).
    External(u16),
}

/// Per clip, in seconds.
#[derive(Default)]
struct Series {
    /// rename -> MAIL FROM (aiosmtpd only).
    reaction: Vec<f64>,
    /// MAIL FROM -> end of DATA (aiosmtpd only).
    transfer: Vec<f64>,
    /// rename -> 250, as the watchdog recorded it.
    total: Vec<f64>,
}

impl Series {
    fn sort(&mut self) {
        for v in [&mut self.reaction, &mut self.transfer, &mut self.total] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
    }
}

/// When the watchdog recorded the server's 250 for this clip (unix seconds), once it has.
fn accepted_at(spool: &Path, id: &str) -> Option<f64> {
    let d = Delivery::load(spool, id).ok()??;
    let t = d.part(Part::Clip)?.values().next()?.accepted_at?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

async fn measure(server: Server, mode: WatchMode, clip: &(Vec<u8>, Vec<u8>, Sidecar), n: usize) -> Series {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (mut child, port) = match server {
        Server::Aiosmtpd => {
            let (c, p) = start_aiosmtpd(&maildir);
            (Some(c), p)
        }
        Server::External(p) => (None, p),
    };
    let mut cfg = Config { node: "bench".into(), ..Config::default() };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.clip.spool_dir = dir.path().join("spool");
    cfg.smtp.host = "127.0.0.1".into();
    cfg.smtp.port = Some(port);
    cfg.smtp.tls = SmtpTls::None;
    cfg.smtp.to = vec!["ops@example.com".into()];
    cfg.watch.mode = mode;
    cfg.watch.poll_interval = POLL;
    cfg.watch.min_gap = Duration::ZERO;
    cfg.watch.max_per_hour = 100_000;
    cfg.watch.spool_min_free = bytesize::ByteSize::mib(1);
    // Keep the delivery records: they hold the time of the 250.
    cfg.watch.keep_delivered = true;
    cfg.watch.spool_max_size = bytesize::ByteSize::gib(100);
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
        // The detector's protocol, with the clock started at the rename itself.
        let staged = staging.join(format!("{id}.json"));
        spool::write_file_synced(&staged, &serde_json::to_vec(&side).unwrap()).unwrap();
        let t0 = now_unix();
        std::fs::rename(&staged, &p.sidecar).unwrap();
        spool::sync_dir(&cfg.clip.spool_dir).unwrap();
        let t_accepted = loop {
            match accepted_at(&cfg.clip.spool_dir, &id) {
                Some(t) => break t,
                // The figure is the watchdog's own timestamp, so this only paces the run: a slow
                // poll keeps the bench's reads (and the inotify events they raise) off the path.
                None => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        };
        out.total.push(t_accepted - t0);
        if server == Server::Aiosmtpd {
            let env: serde_json::Value = loop {
                let f = maildir.join(format!("{:05}.json", i + 1));
                match std::fs::read(&f).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    Some(v) => break v,
                    None => tokio::time::sleep(Duration::from_millis(25)).await,
                }
            };
            let (t_mail, t_data) = (env["t_mail"].as_f64().unwrap(), env["t_data"].as_f64().unwrap());
            out.reaction.push(t_mail - t0);
            out.transfer.push(t_data - t_mail);
        }
        // The next event comes at an evenly spread point of the polling interval.
        tokio::time::sleep(gap(i)).await;
    }
    stop.cancel();
    running.wait().await.unwrap();
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
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
    let external = std::env::var("BENCH_SMTP").ok().map(|a| {
        let port = a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("BENCH_SMTP=127.0.0.1:PORT");
        (a, port)
    });
    let ms = |v: f64| v * 1e3;
    // The same message as the watchdog sends, built here once.
    let payload = {
        let cfg = Config::default();
        let alert = edgewatch::watchdog::mail::Alert {
            sidecar: &clip.2,
            message_id: "<floor@bench>",
            clip: Some(edgewatch::watchdog::mail::base64_body(&clip.0)),
            still: Some(clip.1.clone()),
            link: None,
            summary: &[],
            reply_to: None,
        };
        let msg = edgewatch::watchdog::mail::build(&cfg.smtp, "ops@example.com", &alert).expect("message");
        dot_stuff(&msg.formatted())
    };
    let floor = |server: Server, total: &[f64]| {
        if let Server::External(port) = server {
            let f = mta_floor(port, &payload, CLIPS);
            println!(
                "  MTA floor: same {:.1} MB message ready-made, minimal client (MAIL FROM -> 250)   median {:8.1} ms   p99 {:8.1} ms",
                payload.len() as f64 / 1e6,
                ms(percentile(&f, 0.5)),
                ms(percentile(&f, 0.99))
            );
            println!(
                "  watchdog's own cost over the floor: median {:+.1} ms, p99 {:+.1} ms",
                ms(percentile(total, 0.5) - percentile(&f, 0.5)),
                ms(percentile(total, 0.99) - percentile(&f, 0.99))
            );
        }
    };
    let row = |name: &str, v: &[f64]| {
        println!("  {name:<38} median {:8.1} ms   p99 {:8.1} ms", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)))
    };
    let mut servers = vec![];
    if std::env::var("BENCH_SKIP_AIOSMTPD").map_or(true, |v| v != "1") {
        servers.push((Server::Aiosmtpd, "loopback aiosmtpd (Python)".to_string()));
    }
    if let Some((addr, port)) = &external {
        servers.push((Server::External(*port), format!("MTA at {addr}")));
    }
    for (server, name) in servers {
        let inotify = rt.block_on(measure(server, WatchMode::Inotify, &clip, CLIPS));
        if n_poll == 0 {
            // BENCH_POLL_CLIPS=0: the inotify figures alone.
            println!("watchdog latency: sidecar rename -> SMTP 250 OK, {CLIPS} clips, inotify only, {name}");
            row("inotify: total (rename -> 250)", &inotify.total);
            floor(server, &inotify.total);
            continue;
        }
        let poll = rt.block_on(measure(server, WatchMode::Poll, &clip, n_poll));
        println!(
            "watchdog latency: sidecar rename -> SMTP 250 OK, {} clips (polling: {}) of {:.1} MB each, {name}",
            inotify.total.len(),
            poll.total.len(),
            clip.0.len() as f64 / 1e6
        );
        if server == Server::Aiosmtpd {
            row("inotify: rename -> MAIL FROM", &inotify.reaction);
            row("inotify: MAIL FROM -> end of DATA", &inotify.transfer);
        }
        row("inotify: total (rename -> 250)", &inotify.total);
        if server == Server::Aiosmtpd {
            row("poll 3 s: rename -> MAIL FROM", &poll.reaction);
        }
        row("poll 3 s: total (rename -> 250)", &poll.total);
        if server == Server::Aiosmtpd {
            println!(
                "  watchdog's part (rename -> MAIL FROM): p99 {:.1} ms; median ratio poll/inotify {:.0}x",
                ms(percentile(&inotify.reaction, 0.99)),
                percentile(&poll.reaction, 0.5) / percentile(&inotify.reaction, 0.5)
            );
        }
        println!(
            "  rename -> 250: p99 {:.1} ms (target < 100 ms); median ratio poll/inotify {:.1}x (target >= 10x)",
            ms(percentile(&inotify.total, 0.99)),
            percentile(&poll.total, 0.5) / percentile(&inotify.total, 0.5)
        );
        floor(server, &inotify.total);
    }
}
