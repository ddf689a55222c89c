//! First-alert latency (issue 19): from the detector's decision to the SMTP server's 250 for
//! the first alert (`alert.first = "snapshot"`), beside the clip-first latency of the one email
//! of `alert.first = "none"`, over the same events; and the decision -> record durable part.
//!
//! Each event runs the detector's own steps on real data: at the decision its record and the
//! still of a real frame are written with `spool::write_event` (what the detector calls); the
//! clip follows after the post-roll (5 s) as the detector makes it: the demo video's 10 s of
//! frames encoded by `encode_mp4`, then committed, clip before sidecar. The watchdog is the real
//! one. Events come 0.5-1.5 s apart (a busy camera; one camera's events are >= 20 s apart in
//! practice), so first alerts queue behind clip emails and encodes as they would on a node.
//! The end of each path is the watchdog's own record of the 250 (`accepted_at`).
//!
//! `cargo bench --bench alert` (aiosmtpd from scripts/deps.sh test), `BENCH_EVENTS` (default
//! 200), `BENCH_SMTP=127.0.0.1:PORT` adds an external MTA (bench/postfix.sh starts Postfix).

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use edgewatch::clip::encode::{encode_mp4, ClipFrame, EncodeSettings};
use edgewatch::config::{Config, FirstAlert, SmtpTls, WatchMode};
use edgewatch::source::AviReader;
use edgewatch::spool::{self, EventRecord, Sidecar};
use edgewatch::watchdog::state::{Delivery, Part};
use tokio_util::sync::CancellationToken;

#[path = "support/mod.rs"]
mod support;
use support::{percentile, start_aiosmtpd};

const POST_ROLL: Duration = Duration::from_secs(5);

/// 0.5-1.5 s between events, spread evenly (a fixed pattern: both modes see the same arrivals).
fn gap(i: usize) -> Duration {
    Duration::from_millis(500 + (i as u64 * 389) % 1000)
}

/// The demo video's first 10 s: the frames of one clip, as the detector holds them.
fn demo_frames() -> Vec<ClipFrame> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/demo.avi");
    let mut r = AviReader::new(BufReader::new(File::open(path).unwrap())).unwrap();
    let fps = r.info().fps;
    let mut frames = Vec::new();
    while let Some(jpeg) = r.next_frame().unwrap() {
        let pts = Duration::from_secs_f64(frames.len() as f64 / fps);
        frames.push(ClipFrame { jpeg: jpeg.into(), pts });
        if pts >= Duration::from_secs(10) {
            break;
        }
    }
    frames
}

/// Seconds from decision, per event.
#[derive(Default)]
struct Series {
    durable: Vec<f64>,
    first: Vec<f64>,
    clip: Vec<f64>,
}

/// When the watchdog recorded the 250 of `part` for `id`, as unix seconds.
fn accepted(spool: &Path, id: &str, part: Part) -> Option<f64> {
    let d = Delivery::load(spool, id).ok()??;
    let t = d.part(part)?.values().next()?.accepted_at?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

fn unix(t: chrono::DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

async fn measure(port: u16, first: FirstAlert, frames: &[ClipFrame], n: usize) -> Series {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { node: "bench".into(), ..Config::default() };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.clip.spool_dir = dir.path().join("spool");
    cfg.alert.first = first;
    cfg.smtp.host = "127.0.0.1".into();
    cfg.smtp.port = Some(port);
    cfg.smtp.tls = SmtpTls::None;
    cfg.smtp.to = vec!["ops@example.com".into()];
    cfg.watch.mode = WatchMode::Inotify;
    cfg.watch.min_gap = Duration::ZERO;
    cfg.watch.max_per_hour = 100_000;
    cfg.watch.spool_min_free = bytesize::ByteSize::mib(1);
    // Keep the delivery records: they hold the times of the 250s.
    cfg.watch.keep_delivered = true;
    cfg.watch.spool_max_size = bytesize::ByteSize::gib(100);
    std::fs::create_dir_all(cfg.clip.spool_dir.join(spool::TMP_DIR)).unwrap();
    let stop = CancellationToken::new();
    let running = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();

    // The detector's encoder thread: each clip after its post-roll, in order.
    let (tx, rx) = mpsc::channel::<(EventRecord, Instant)>();
    let spool_dir = cfg.clip.spool_dir.clone();
    let clip_frames = frames.to_vec();
    let encoder = std::thread::spawn(move || {
        for (r, decided) in rx {
            if let Some(wait) = (decided + POST_ROLL).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let settings = EncodeSettings { bitrate_bps: 1_500_000, fps: 15.0, keyframe_interval: 30 };
            let mut mp4 = Cursor::new(Vec::new());
            let stats = encode_mp4(&clip_frames, &settings, &mut mp4).unwrap();
            let mp4 = mp4.into_inner();
            let mut s = Sidecar::without_clip(&r, String::new());
            s.clip_missing = None;
            s.clip_file = format!("{}.mp4", r.event_id);
            s.clip_bytes = mp4.len() as u64;
            s.clip_sha256 = edgewatch::model::sha256_hex(&mp4);
            s.duration = stats.duration.as_secs_f64();
            s.frames = stats.frames_encoded;
            let json = serde_json::to_vec(&s).unwrap();
            spool::commit(&spool_dir, &[(&s.clip_file, &mp4)]).unwrap();
            spool::commit(&spool_dir, &[(&format!("{}.json", r.event_id), &json)]).unwrap();
        }
    });

    let still = frames[75].jpeg.clone();
    let mut out = Series::default();
    let mut records = Vec::new();
    for i in 0..n {
        tokio::time::sleep(gap(i)).await;
        let decided = Instant::now();
        let now = Utc::now();
        let id = format!("{}-cam0", now.format("%Y%m%dT%H%M%S%.3fZ"));
        let r = EventRecord {
            event_id: id.clone(),
            node: "bench".into(),
            camera: "cam0".into(),
            event_time: now,
            media_time: 0.0,
            decided_at: now,
            score: 0.93,
            threshold: 0.5,
            model_name: "edgewatch-demo".into(),
            model_sha256: "0".repeat(64),
            still_file: format!("{id}.jpg"),
        };
        spool::write_event(&cfg.clip.spool_dir, &r, &still).unwrap();
        out.durable.push(decided.elapsed().as_secs_f64());
        tx.send((r.clone(), decided)).unwrap();
        records.push(r);
    }
    drop(tx);
    encoder.join().unwrap();
    for r in &records {
        let decided = unix(r.decided_at);
        let (first_at, clip_at) = loop {
            let f = if first == FirstAlert::Snapshot {
                accepted(&cfg.clip.spool_dir, &r.event_id, Part::First)
            } else {
                Some(0.0)
            };
            match (f, accepted(&cfg.clip.spool_dir, &r.event_id, Part::Clip)) {
                (Some(f), Some(c)) => break (f, c),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        if first == FirstAlert::Snapshot {
            out.first.push(first_at - decided);
        }
        out.clip.push(clip_at - decided);
    }
    stop.cancel();
    running.wait().await.unwrap();
    for v in [&mut out.durable, &mut out.first, &mut out.clip] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    out
}

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let frames = demo_frames();
    let ms = |v: f64| v * 1e3;
    let row = |name: &str, v: &[f64]| {
        println!(
            "  {name:<52} p50 {:8.1} ms   p99 {:8.1} ms   max {:8.1} ms",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(v[v.len() - 1])
        )
    };
    let mut servers: Vec<(String, u16, Option<Child>)> = Vec::new();
    let maildir = tempfile::tempdir().unwrap();
    let (child, port) = start_aiosmtpd(maildir.path());
    servers.push(("loopback aiosmtpd (Python)".into(), port, Some(child)));
    if let Ok(a) = std::env::var("BENCH_SMTP") {
        let port = a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("BENCH_SMTP=127.0.0.1:PORT");
        servers.push((format!("MTA at {a}"), port, None));
    }
    for (name, port, _) in &servers {
        // Alternating modes, twice each, so that drift over the run falls on both.
        let mut snap = Series::default();
        let mut none = Series::default();
        for round in 0..2 {
            for mode in [FirstAlert::Snapshot, FirstAlert::None] {
                let s = rt.block_on(measure(*port, mode, &frames, n / 2));
                let into = if mode == FirstAlert::Snapshot { &mut snap } else { &mut none };
                into.durable.extend(s.durable);
                into.first.extend(s.first);
                into.clip.extend(s.clip);
                eprintln!("round {round}, {mode:?}: done");
            }
        }
        for v in [&mut snap.durable, &mut snap.first, &mut snap.clip, &mut none.durable, &mut none.clip] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        println!(
            "alert latency from the decision, {} events per mode ({} frames of 640x480 per clip, post-roll {} s), {name}",
            snap.first.len(),
            frames.len(),
            POST_ROLL.as_secs()
        );
        row("decision -> record and still durable (write_event)", &snap.durable);
        row("snapshot: decision -> first alert 250", &snap.first);
        row("snapshot: decision -> clip email 250 (the reply)", &snap.clip);
        row("none: decision -> the one email 250 (clip first)", &none.clip);
        println!(
            "  first alert p99 {:.1} ms (target < 500 ms); clip-first p50/first-alert p50 {:.0}x",
            ms(percentile(&snap.first, 0.99)),
            percentile(&none.clip, 0.5) / percentile(&snap.first, 0.5)
        );
    }
    for (_, _, child) in &mut servers {
        if let Some(c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
