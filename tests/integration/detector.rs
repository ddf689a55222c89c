//! The detector end to end on ffmpeg-made videos with the test model, whose response is known:
//! score = sigmoid(40 · (mean brightness over the window − 0.6)) (see model/README.md).

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgewatch::infer::decode_rgb;
use edgewatch::source::{AviReader, Sampler};
use edgewatch::spool::{self, Sidecar};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// Predicts the first trigger (media seconds) from the frames themselves and the model's formula.
fn predict_trigger(video: &Path, k: usize, n: usize) -> f64 {
    predict_trigger_at(video, k, n, 0.5)
}

/// [`predict_trigger`] with another threshold than the model's 0.5.
fn predict_trigger_at(video: &Path, k: usize, n: usize, threshold: f64) -> f64 {
    predict_trigger_sampled(video, k, n, threshold, |_| 5.0)
}

/// [`predict_trigger_at`] with the sampling rate `rate_at(pts)` (the adaptive rate, rate.rs).
pub fn predict_trigger_sampled(
    video: &Path,
    k: usize,
    n: usize,
    threshold: f64,
    rate_at: impl Fn(Duration) -> f64,
) -> f64 {
    let mut r = AviReader::new(BufReader::new(File::open(video).unwrap())).unwrap();
    let fps = r.info().fps;
    let mut sampler = Sampler::new(rate_at(Duration::ZERO));
    let mut window: VecDeque<f64> = VecDeque::new();
    let mut recent: VecDeque<bool> = VecDeque::new();
    let mut seq = 0u64;
    while let Some(jpeg) = r.next_frame().unwrap() {
        let pts = Duration::from_nanos((seq as f64 * 1e9 / fps).round() as u64);
        seq += 1;
        sampler.set_fps(rate_at(pts));
        if !sampler.take(pts) {
            continue;
        }
        let rgb = decode_rgb(&jpeg).unwrap();
        let mean = rgb.data.iter().map(|v| *v as f64).sum::<f64>() / rgb.data.len() as f64 / 255.0;
        window.push_back(mean);
        if window.len() > 16 {
            window.pop_front();
        }
        if window.len() < 16 {
            continue;
        }
        let m = window.iter().sum::<f64>() / 16.0;
        let score = 1.0 / (1.0 + (-40.0 * (m - 0.6)).exp());
        recent.push_back(score >= threshold);
        if recent.len() > n {
            recent.pop_front();
        }
        if recent.iter().filter(|a| **a).count() >= k {
            return pts.as_secs_f64();
        }
    }
    panic!("the model's formula predicts no event in {}", video.display());
}

fn stream_duration(probe: &serde_json::Value) -> f64 {
    probe["streams"][0]["duration"].as_str().and_then(|d| d.parse().ok()).expect("stream duration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_the_burst_when_predicted_and_writes_playable_clips() {
    init_logs();
    let (video, burst_start, _burst_end) =
        fixture_video(&["--size", "320x240", "--calm", "12", "--burst", "4", "--after", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), &video);
    // max-length = pre + post, so every clip has exactly the configured length.
    cfg.clip.max_length = cfg.clip.pre_roll + cfg.clip.post_roll;
    cfg.archive.target = dir.path().join("archive").display().to_string();
    let expected = predict_trigger(&video, cfg.decision.k, cfg.decision.n);
    assert!(expected > burst_start, "prediction {expected} before the burst {burst_start}");

    let shutdown = CancellationToken::new();
    let running = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let addr = running.http_addr;
    let summary = running.wait().await.unwrap();

    assert_eq!(summary.events.len(), 1, "{summary:#?}");
    let ev = &summary.events[0];
    // Within one sampling interval (0.2 s) of the prediction; the LSTM term and resizing can
    // move a score that sits right at the threshold by one evaluation.
    assert!((ev.trigger_at - expected).abs() <= 0.21, "event at {} s, predicted {expected} s", ev.trigger_at);
    assert!(ev.peak_score > 0.9, "peak {}", ev.peak_score);

    // The clip plays, is H.264 in MP4, and lasts pre-roll + post-roll within one frame.
    let frame = 1.0 / 15.0;
    let probe = ffprobe(&ev.clip);
    assert_eq!(probe["streams"][0]["codec_name"], "h264", "{probe}");
    assert!(probe["format"]["format_name"].as_str().unwrap().contains("mp4"), "{probe}");
    let dur = stream_duration(&probe);
    assert!((dur - 10.0).abs() <= frame + 1e-3, "clip lasts {dur} s");
    let decoded =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&ev.clip).args(["-f", "null", "-"]).output().unwrap();
    assert!(decoded.status.success() && decoded.stderr.is_empty(), "{}", String::from_utf8_lossy(&decoded.stderr));

    // The sidecar describes it: pre-roll, scores, model, checksum.
    let side: Sidecar = spool::read_sidecar(&ev.clip.with_extension("json")).unwrap();
    assert!((side.pre_roll - 5.0).abs() <= frame + 1e-3, "pre-roll {}", side.pre_roll);
    assert_eq!(side.node, "test-node");
    assert_eq!(side.model_sha256, summary.model_sha256);
    assert_eq!(side.clip_sha256, edgewatch::model::sha256_hex(&std::fs::read(&ev.clip).unwrap()));
    assert!(side.scores.iter().any(|s| s.score >= 0.5) && side.scores.iter().any(|s| s.score < 0.5));
    assert!(side.clip_bytes < 3_000_000);

    // Archived to the directory target, with the marker the watchdog waits for.
    assert_eq!(summary.archived, vec![side.event_id.clone()]);
    let archived = spool::ClipPaths::new(&cfg.clip.spool_dir, &side.event_id).archived;
    assert!(archived.exists());
    let day = side.event_time.format("%Y-%m-%d").to_string();
    let copy = dir.path().join("archive/test-node").join(day).join(format!("{}.mp4", side.event_id));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&ev.clip).unwrap());
    // Nothing half-written is left behind.
    assert_eq!(std::fs::read_dir(cfg.clip.spool_dir.join(".tmp")).unwrap().count(), 0);

    // Metrics are valid Prometheus exposition and count what happened.
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let complaints = promtool_check_metrics(&body);
    assert!(complaints.trim().is_empty(), "promtool: {complaints}\n{body}");
    for needle in [
        "edgewatch_events_total 1",
        "edgewatch_clips_written_total 1",
        "edgewatch_uploads_total{result=\"ok\"} 1",
        "edgewatch_model_info{",
        // Which engine runs and why (`model.backend = "auto"` by default).
        "backend_reason=\"",
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    assert!(body.contains(&format!("edgewatch_frames_captured_total {}", summary.frames_captured)));
    assert_eq!(http_get(addr, "/healthz").0, 200);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_frames_are_skipped_and_counted() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "4", "--burst", "4", "--after", "2"]);
    // Corrupt every 10th frame's JPEG data in a copy of the file (keeping the RIFF structure).
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.avi");
    let mut data = std::fs::read(&video).unwrap();
    // Walk the chunks of the 'movi' list (the headers' index also mentions "00dc").
    let mut pos = data.windows(4).position(|w| w == b"movi").unwrap() + 4;
    let movi_end = data.windows(4).rposition(|w| w == b"idx1").unwrap_or(data.len());
    let (mut corrupted, mut nth) = (0, 0);
    while pos + 8 <= movi_end {
        let id = &data[pos..pos + 4];
        let size = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if id == b"LIST" {
            pos += 12;
            continue;
        }
        if id == b"00dc" {
            if nth % 10 == 5 {
                for b in &mut data[pos + 8..pos + 8 + size.min(200)] {
                    *b = 0x5a;
                }
                corrupted += 1;
            }
            nth += 1;
        }
        pos += 8 + size + (size & 1);
    }
    assert!(corrupted > 5);
    std::fs::write(&bad, &data).unwrap();
    let cfg = test_config(dir.path(), &bad);
    let shutdown = CancellationToken::new();
    let running = edgewatch::detector::start(cfg, shutdown.clone()).await.unwrap();
    let addr = running.http_addr;
    let summary = running.wait().await.expect("bad frames are not fatal");
    assert_eq!(summary.frames_captured as usize, nth);
    let (_, body) = http_get(addr, "/metrics");
    let failed: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("edgewatch_frames_decode_failed_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(failed >= 1.0, "decode failures not counted:\n{body}");
    shutdown.cancel();
}

/// SIGTERM in the middle of an event: the process exits cleanly and the clip in flight is
/// finished (shorter), never half-written.
#[test]
fn sigterm_finishes_the_clip_in_flight() {
    let (video, burst_start, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "6", "--after", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let conf = dir.path().join("edgewatch.toml");
    std::fs::write(
        &conf,
        format!(
            "node = \"sig\"\ncamera = \"cam0\"\n[log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [source]\nkind = \"file\"\npath = \"{}\"\npace = \"realtime\"\n[model]\nsource = \"{}\"\n\
             [clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MB\"\n",
            video.display(),
            test_model().display(),
            spool_dir.display()
        ),
    )
    .unwrap();
    let mut child = Reaped(
        Command::new(bin())
            .args(["--config"])
            .arg(&conf)
            .arg("detect")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut log = Vec::new();
    let deadline = Duration::from_secs_f64(burst_start + 15.0);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("no event; log:\n{}", log.join("\n")));
        // JSON logs: one object per line (what promtail ships).
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        log.push(line);
        if v["message"] == "event started" {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(l);
    }
    assert!(status.success(), "exit {status}; log:\n{}", log.join("\n"));
    let ids = spool::complete_clips(&spool_dir).unwrap();
    assert_eq!(ids.len(), 1, "log:\n{}", log.join("\n"));
    let paths = spool::ClipPaths::new(&spool_dir, &ids[0]);
    let side = spool::read_sidecar(&paths.sidecar).unwrap();
    assert!(side.duration < 10.0, "clip was cut short by the shutdown: {}", side.duration);
    assert!((stream_duration(&ffprobe(&paths.clip)) - side.duration).abs() < 0.1);
    assert_eq!(std::fs::read_dir(spool_dir.join(".tmp")).unwrap().count(), 0);
    assert!(log.iter().any(|l| l.contains("finishing the clip in flight")));
    // The event above came from the channels-last backbone, tract's default (src/infer.rs).
    let loaded = log.iter().find(|l| l.contains("\"model loaded\"")).expect("a model-loaded line");
    assert!(loaded.contains("\"layout\":\"nhwc\""), "{loaded}");
    assert!(loaded.contains("\"decode\":\"scaled\""), "{loaded}");
    // Start-up CPU (the benchmark's steady-state figure subtracts it) is logged, and real.
    let loaded: serde_json::Value = serde_json::from_str(loaded).unwrap();
    assert!(loaded["startup_cpu_s"].as_f64().is_some_and(|s| s > 0.0 && s < 60.0), "{loaded}");
    // The released binary, not just the library's unit tests, has edgewatch's x86 depthwise
    // kernel in tract's registry: a linker dropping the registration would show here.
    #[cfg(target_arch = "x86_64")]
    let kernel =
        if std::arch::is_x86_feature_detected!("avx") { edgewatch::infer::depthwise_x86::NAME } else { "generic" };
    #[cfg(target_arch = "aarch64")]
    let kernel = "arm64simd_depthwise_c_f32";
    assert_eq!(loaded["depthwise_kernel"], kernel, "{loaded}");
}

/// A spool below its free-space floor: the event is still recorded at once, the clip is held
/// and retried with a clear error and the `disk_full` metric, `/readyz` says why, and the
/// detector keeps running. Stopped while the clip is held, the event stays open; the next start
/// closes it without a clip (no frame journal here), so the watchdog can still say what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_is_reported_and_the_detector_keeps_running() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), &video);
    cfg.clip.min_free_space = bytesize::ByteSize::pib(100);
    let shutdown = CancellationToken::new();
    let running = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let addr = running.http_addr;
    let ready = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(60), "the clip held for want of space", || {
            let body = http_get(addr, "/metrics").1;
            (sample(&body, "edgewatch_clips_held") == 1.0).then(|| http_get(addr, "/readyz"))
        })
    })
    .await
    .unwrap();
    assert_eq!(ready.0, 503, "not ready while the spool is full");
    assert!(ready.1.contains("spool full"), "{}", ready.1);
    let (_, body) = http_get(addr, "/metrics");
    assert!(body.contains("edgewatch_clip_write_failed_total{reason=\"disk_full\"} 1"), "{body}");
    assert!(sample(&body, "edgewatch_clip_bytes_held") > 10_000.0, "{body}");
    // The event itself was recorded the moment it was decided.
    let open = spool::open_events(&cfg.clip.spool_dir).unwrap();
    assert_eq!(open.len(), 1);
    assert!(spool::ClipPaths::new(&cfg.clip.spool_dir, &open[0]).still.exists());
    shutdown.cancel();
    let summary = running.wait().await.expect("a full disk does not end the detector");
    assert_eq!(summary.clip_failures, 1, "one event left open at shutdown");
    assert!(summary.events.is_empty());
    assert!(summary.frames_captured >= 15 * 5, "kept capturing: {}", summary.frames_captured);
    assert!(spool::complete_clips(&cfg.clip.spool_dir).unwrap().is_empty());
    assert_eq!(std::fs::read_dir(cfg.clip.spool_dir.join(".tmp")).unwrap().count(), 0);

    // The next start (with room) closes the open event without a clip, before anything else.
    cfg.clip.min_free_space = bytesize::ByteSize::mib(1);
    let (calm, _, _) = fixture_video(&["--size", "320x240", "--calm", "3", "--burst", "0.2", "--after", "1"]);
    cfg.source.path = Some(calm);
    let next = edgewatch::detector::run(cfg.clone(), CancellationToken::new()).await.unwrap();
    assert!(next.events.is_empty(), "no new event: {next:#?}");
    assert_eq!(next.without_clip.len(), 1, "{next:#?}");
    let side = spool::read_sidecar(&spool::ClipPaths::new(&cfg.clip.spool_dir, &open[0]).sidecar).unwrap();
    let why = side.clip_missing.expect("closed without a clip");
    assert!(why.starts_with("clip unavailable: the detector restarted at"), "{why}");
    assert!(spool::open_events(&cfg.clip.spool_dir).unwrap().is_empty());
}

/// `edgewatch demo` as a newcomer runs it: no config, no network. The bundled video's fight gives
/// one event, a playable clip in the spool, a copy in the local archive and one alert in the outbox.
#[test]
fn the_demo_runs_offline_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(bin()).args(["demo", "--out"]).arg(dir.path()).env_remove("EDGEWATCH_CONFIG").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 event(s)"), "{stdout}");
    // The fight runs 9-15 s; the first window wholly inside it ends at 12 s.
    let at: f64 = stdout
        .split(" at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no event time in {stdout}"));
    assert!((9.0..=13.0).contains(&at), "event at {at} s: {stdout}");
    let files = |sub: &str, ext: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path().join(sub))
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let clips = files("spool", "mp4");
    assert_eq!(clips.len(), 1, "{stdout}");
    // 5 s before + 5 s after, extended while the fight goes on, up to clip.max-length (30 s).
    let d = stream_duration(&ffprobe(&clips[0]));
    assert!((9.9..=30.1).contains(&d), "clip of {d} s");
    // The first alert with the still, then the clip in a reply.
    assert_eq!(files("outbox", "eml").len(), 2, "{stdout}");
    let archived: Vec<_> = walk(&dir.path().join("archive")).into_iter().filter(|p| p.ends_with(".mp4")).collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// A camera that is missing (unplugged, or not yet enumerated at boot) is retried with capped
/// backoff and counted, and never ends the process. No V4L2 device exists on the CI machine, so
/// this covers the error path; capturing from a real camera is left to the Pi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_camera_is_retried_counted_and_never_fatal() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), Path::new("/unused.avi"));
    cfg.source.kind = edgewatch::config::SourceKind::V4l2;
    cfg.source.device = dir.path().join("video0");
    cfg.source.reconnect_min = Duration::from_millis(50);
    cfg.source.reconnect_max = Duration::from_millis(200);
    let shutdown = CancellationToken::new();
    let running = edgewatch::detector::start(cfg, shutdown.clone()).await.unwrap();
    let addr = running.http_addr;
    let body = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "several reconnect attempts", || {
            let body = http_get(addr, "/metrics").1;
            let v = |name: &str| sample(&body, name);
            (v("edgewatch_camera_reconnects_total") >= 5.0 && v("edgewatch_camera_outage_seconds_total") > 0.5)
                .then_some(body)
        })
    })
    .await
    .unwrap();
    assert!(body.contains("edgewatch_camera_up 0"), "{body}");
    let (health, ready) =
        tokio::task::spawn_blocking(move || (http_get(addr, "/healthz").0, http_get(addr, "/readyz").0)).await.unwrap();
    assert_eq!(health, 200, "alive while the camera is missing");
    assert_ne!(ready, 200, "not ready without frames");
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// One step of a scripted camera.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Opening fails (unplugged).
    OpenFails,
    /// Opens, delivers this many frames at 15 fps, then a read fails (a hung USB camera).
    Frames(usize),
    /// Opens, delivers this many frames, then blocks without a word for this long, then fails
    /// (what V4L2's read timeout turns a stalled camera into).
    Stall(usize, Duration),
}

/// A camera that follows a script, then delivers frames for good; each open is timestamped.
struct Scripted {
    jpeg: bytes::Bytes,
    frames_left: usize,
    stall: Option<Duration>,
    seq: u64,
    started: Instant,
}

impl edgewatch::source::FrameSource for Scripted {
    fn next_frame(&mut self) -> Result<Option<edgewatch::source::Frame>, edgewatch::source::SourceError> {
        if self.frames_left == 0 {
            if let Some(d) = self.stall.take() {
                std::thread::sleep(d);
            }
            return Err(edgewatch::source::SourceError::Io {
                what: "scripted camera".into(),
                source: std::io::Error::other("read failed"),
            });
        }
        self.frames_left -= 1;
        let pts = Duration::from_millis(self.seq * 1000 / 15);
        // Paced like a camera, from a clock that restarts at each open.
        let due = self.started + pts;
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        self.seq += 1;
        Ok(Some(edgewatch::source::Frame { seq: self.seq, pts, wall: chrono::Utc::now(), jpeg: self.jpeg.clone() }))
    }
    fn fps(&self) -> f64 {
        15.0
    }
    fn describe(&self) -> String {
        "scripted camera".into()
    }
    fn realtime(&self) -> bool {
        true
    }
}

/// The camera path as a user sees it: a camera that fails to open, opens and then fails its
/// reads, stalls without a word, and comes back. Reconnect delays grow, are capped, and reset
/// only after frames have flowed for `reconnect-max`; every failure is counted; `camera_up`
/// and `/readyz` follow the camera; media time never goes back across the gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_camera_backs_off_is_counted_and_comes_back() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let jpeg = bytes::Bytes::from(
        AviReader::new(BufReader::new(File::open(&video).unwrap())).unwrap().next_frame().unwrap().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), Path::new("/unused.avi"));
    cfg.source.kind = edgewatch::config::SourceKind::V4l2;
    cfg.source.reconnect_min = Duration::from_millis(100);
    cfg.source.reconnect_max = Duration::from_millis(800);
    cfg.http.stale_after = Duration::from_millis(700);
    use Step::*;
    let script = vec![
        OpenFails,
        OpenFails,
        OpenFails,
        Frames(3),
        Frames(3),
        OpenFails,
        Frames(30), // 2 s of frames: longer than reconnect-max, so the backoff resets
        Stall(5, Duration::from_millis(1500)),
        OpenFails,
    ];
    let opens: std::sync::Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let log = opens.clone();
    let mut steps = script.clone().into_iter();
    let camera: edgewatch::detector::OpenCamera = Box::new(move || {
        log.lock().unwrap().push(Instant::now());
        let (frames, stall) = match steps.next() {
            Some(OpenFails) => {
                return Err(edgewatch::source::SourceError::Open {
                    what: "scripted camera".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })
            }
            Some(Frames(n)) => (n, None),
            Some(Stall(n, d)) => (n, Some(d)),
            None => (usize::MAX, None), // back for good
        };
        Ok(Box::new(Scripted { jpeg: jpeg.clone(), frames_left: frames, stall, seq: 0, started: Instant::now() }))
    });
    let shutdown = CancellationToken::new();
    let running = edgewatch::detector::start_with_camera(cfg, shutdown.clone(), camera).await.unwrap();
    let addr = running.http_addr;
    // Watch /readyz and camera_up until the camera is back for good (the script is done and
    // frames flow), recording each change.
    let n_steps = script.len();
    let o = opens.clone();
    let (seen, body) = tokio::task::spawn_blocking(move || {
        let mut seen: Vec<(u16, f64)> = Vec::new();
        let body = wait_until(Duration::from_secs(60), "the camera back for good", || {
            let state = (http_get(addr, "/readyz").0, metric(addr, "edgewatch_camera_up"));
            if seen.last() != Some(&state) {
                seen.push(state);
            }
            let back = o.lock().unwrap().len() > n_steps && state == (200, 1.0);
            back.then(|| http_get(addr, "/metrics").1)
        });
        (seen, body)
    })
    .await
    .unwrap();
    // 1.5 s more of frames after the last reopen, for the media-time check below.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    let summary = running.wait().await.unwrap();

    let opens = opens.lock().unwrap().clone();
    let gaps: Vec<u128> = opens.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    println!("camera: waits before each reopen (ms, including the time the camera ran): {gaps:?}");
    println!("camera: (/readyz, camera_up) as seen: {seen:?}");
    // Each reopen comes after the backoff, plus the time the camera ran before failing: three
    // failed opens (100, 200, 400 ms), two short runs whose reads fail (800 ms: capped, and
    // not reset, the frames did not flow for reconnect-max), a failed open (800), a 2 s run
    // (reset), its read failure (100), a stall of 1.5 s then a read failure (200), a failed open (400).
    let waits: [u128; 9] = [100, 200, 400, 800, 800, 800, 100, 200, 400];
    let ran: [u128; 9] = [0, 0, 0, 133, 133, 0, 1933, 266 + 1500, 0];
    assert_eq!(gaps.len(), 9, "{gaps:?}");
    for (i, (g, (w, r))) in gaps.iter().zip(waits.iter().zip(ran)).enumerate() {
        assert!(
            *g + 5 >= w + r && *g < w + r + 300,
            "reopen {i}: {g} ms, expected {w} ms of backoff after {r} ms of running: {gaps:?}"
        );
    }
    let failures = sample(&body, "edgewatch_camera_reconnects_total");
    assert_eq!(failures, 9.0, "every failure counted, open and read alike:\n{body}");
    // Not ready while it was failing, ready when frames flowed, and at the end.
    assert!(seen.contains(&(503, 0.0)) && seen.contains(&(200, 1.0)), "{seen:?}");
    // During the stall the camera is open (camera_up 1) but no frame comes: not ready once
    // http.stale-after (700 ms) has passed.
    assert!(seen.contains(&(503, 1.0)), "not ready during the stall: {seen:?}");
    assert!(seen.iter().filter(|s| **s == (200, 1.0)).count() >= 2, "ready, then not, then ready again: {seen:?}");
    // Media time went on across the gaps: the sampler (5 of 15 fps) takes a frame only once
    // media time passes its next slot, so had a reopened camera's clock restarted at zero, the
    // frames after each reopen would wait for the old time (about 2.6 s of them after the 2 s
    // run) and far fewer would be inferred than one in three.
    let third = summary.frames_captured as f64 / 3.0;
    assert!(
        summary.frames_inferred as f64 >= third - 4.0,
        "{} inferred of {} captured",
        summary.frames_inferred,
        summary.frames_captured
    );
}

/// `decision.threshold` overrides the manifest's: set in the file or the environment, the event
/// fires when the model's formula crosses the new threshold (later than at the manifest's 0.5),
/// and the record and sidecar carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_threshold_overrides_the_manifests() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "12", "--burst", "4", "--after", "10"]);
    let at_half = predict_trigger(&video, 3, 5);
    let at_high = predict_trigger_at(&video, 3, 5, 0.9999);
    assert!(at_high > at_half, "the higher threshold fires later: {at_high} vs {at_half}");
    for from_env in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, if from_env { String::new() } else { "[decision]\nthreshold = 0.9999\n".into() }).unwrap();
        let env: Vec<(String, String)> =
            if from_env { vec![("EDGEWATCH_DECISION__THRESHOLD".into(), "0.9999".into())] } else { Vec::new() };
        let loaded =
            edgewatch::config::Config::load(&edgewatch::config::Sources { file: Some(f), file_required: true, env })
                .unwrap();
        let mut cfg = test_config(dir.path(), &video);
        cfg.decision = loaded.decision;
        let summary = edgewatch::detector::run(cfg.clone(), CancellationToken::new()).await.unwrap();
        assert_eq!(summary.events.len(), 1, "{summary:#?}");
        let ev = &summary.events[0];
        assert!((ev.trigger_at - at_high).abs() <= 0.21, "fired at {} s, the formula says {at_high} s", ev.trigger_at);
        let side: Sidecar = spool::read_sidecar(&ev.clip.with_extension("json")).unwrap();
        assert_eq!(side.threshold, 0.9999);
        let record = spool::read_event(&ev.clip.with_extension("event")).unwrap();
        assert_eq!(record.threshold, 0.9999);
        // The id is the decision's UTC time (to the millisecond) and the camera.
        assert_eq!(side.event_id, format!("{}-cam0", record.event_time.format("%Y%m%dT%H%M%S%.3fZ")));
    }
}

/// `edgewatch demo --realtime` plays the video at its own frame rate; without the flag it goes
/// as fast as it can.
#[test]
fn the_demo_plays_in_real_time_only_when_asked() {
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "3", "--burst", "0.2", "--after", "3"]);
    let length = 6.2; // seconds of video: 93 frames at 15 fps
    let run = |realtime: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new(bin());
        c.args(["demo", "--out"]).arg(dir.path()).arg("--video").arg(&video).env_remove("EDGEWATCH_CONFIG");
        if realtime {
            c.arg("--realtime");
        }
        let t = Instant::now();
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (t.elapsed().as_secs_f64(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (paced, out) = run(true);
    assert!(paced >= length - 0.2, "--realtime took {paced:.1} s for {length} s of video: {out}");
    assert!(out.contains("93 frames captured"), "{out}");
    let (fast, _) = run(false);
    assert!(fast < paced - 1.0, "without --realtime: {fast:.1} s, with: {paced:.1} s");
}

/// Capture never waits for inference, and inference skips frames, never the clip: with
/// inference slower than the sampling (250 ms per frame against 200 ms; the fault-injection
/// build's slow step), every frame of a paced video is captured, none is dropped, sampled frames
/// are skipped for inference and counted, and the event's clip holds every frame of its span.
#[cfg(feature = "fault-injection")]
#[test]
fn slow_inference_skips_sampled_frames_never_captured_ones() {
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "4", "--burst", "4", "--after", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("detector.toml");
    std::fs::write(
        &conf,
        format!(
            "node = \"slow\"\n[log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [source]\nkind = \"file\"\npath = \"{}\"\npace = \"realtime\"\n[model]\nsource = \"{}\"\ncache-dir = \"{}\"\n\
             [clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MiB\"\n",
            video.display(),
            test_model().display(),
            dir.path().join("cache").display(),
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let (mut child, addr) = detect_child(&conf, port, &[("EW_TEST_SLOW_INFERENCE_MS", "250".as_ref())]);
    // The last scrape before the end of the video (13 s at 15 fps).
    let mut body = String::new();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            drop(s);
            let (code, b) = http_get(addr, "/metrics");
            if code == 200 {
                body = b;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let v = |name: &str| sample(&body, name);
    let frames = 13 * 15;
    assert!(v("edgewatch_frames_captured_total") >= (frames - 3) as f64, "every frame captured:\n{body}");
    assert_eq!(v("edgewatch_frames_dropped_total"), 0.0, "none lost before the clip ring");
    assert!(v("edgewatch_frames_inference_skipped_total") >= 5.0, "inference fell behind and skipped:\n{body}");
    let ids = spool::complete_clips(&dir.path().join("spool")).unwrap();
    assert_eq!(ids.len(), 1, "the burst is detected all the same");
    let side = spool::read_sidecar(&spool::ClipPaths::new(&dir.path().join("spool"), &ids[0]).sidecar).unwrap();
    let span = (side.clip_end - side.clip_start).num_milliseconds() as f64 / 1000.0;
    let expected = (span * 15.0).round() as usize + 1;
    assert_eq!(side.frames, expected, "every captured frame of the clip's {span} s is in it");
}

/// The metric names the README lists are the ones each role serves (`edgewatch_` prefixed), no
/// more, no fewer: the detector's "Metrics" section, and the watchdog's list in its section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_the_readme_lists_are_the_ones_served() {
    init_logs();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let listed = |from: &str, to: &str| -> std::collections::BTreeSet<String> {
        let start = readme.find(from).unwrap_or_else(|| panic!("no `{from}` in README.md"));
        let text = &readme[start..start + readme[start..].find(to).unwrap()];
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(|name| name.split('{').next().unwrap().to_string())
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(|n| format!("edgewatch_{n}"))
            .collect()
    };
    let served = |body: &str| -> std::collections::BTreeSet<String> {
        body.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(String::from)
            .collect()
    };
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), &video);
    cfg.source.pace = edgewatch::config::Pace::Realtime;
    let stop = CancellationToken::new();
    let detector = edgewatch::detector::start(cfg.clone(), stop.clone()).await.unwrap();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    let (d, w) = (detector.http_addr, watchdog.http_addr);
    // Once the model is loaded and frames flow (model_info is set then).
    let (dbody, wbody) = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "the detector ready", || (http_get(d, "/readyz").0 == 200).then_some(()));
        (http_get(d, "/metrics").1, http_get(w, "/metrics").1)
    })
    .await
    .unwrap();
    stop.cancel();
    detector.wait().await.unwrap();
    watchdog.wait().await.unwrap();
    let mut doc_detector = listed("Counters: `frames_captured_total`", "## Benchmarks");
    doc_detector.retain(|n| n != "edgewatch_prefix");
    let doc_watchdog = listed("Metrics: `alerts_sent_total`", "## The model contract");
    let common = ["edgewatch_build_info".to_string()];
    let served_detector = served(&dbody);
    let mut served_watchdog = served(&wbody);
    for c in &common {
        assert!(served_watchdog.remove(c), "{c} served by the watchdog too");
    }
    // build_info is listed once, with the detector's, and served by both.
    assert_eq!(doc_detector, served_detector, "the detector: README (left) vs /metrics (right)");
    assert_eq!(doc_watchdog, served_watchdog, "the watchdog: README (left) vs /metrics (right)");
}
