//! The adaptive sampling rate (#23) through the whole detector: over `model.cpu-budget`, a model
//! that declares a range (`temporal.sample-fps-min`) is sampled less often and still gives the
//! event the brightness contract model predicts; a model without a range keeps its rate and says
//! the budget is not held. The controller's own cases (raising again with hysteresis, backlog,
//! the throttling flags and temperature from a fake sysfs tree) are unit tests in
//! `src/detector/rate.rs`.

use std::path::Path;

use edgewatch::detector::Summary;
use tokio_util::sync::CancellationToken;

use crate::common::{fixture_video, init_logs, test_config, test_model};
use crate::detector::predict_trigger_sampled;

/// A copy of the brightness test model whose manifest allows sampling down to `min` fps.
fn model_with_range(dir: &Path, min: f64) -> std::path::PathBuf {
    let out = dir.join("model-with-range");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["backbone.onnx", "head.onnx"] {
        std::fs::copy(test_model().join(f), out.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(test_model().join("manifest.toml")).unwrap();
    let edited = text.replace("sample-fps = 5.0", &format!("sample-fps = 5.0\nsample-fps-min = {min}"));
    assert_ne!(edited, text, "the test model's manifest no longer says sample-fps = 5.0");
    std::fs::write(out.join("manifest.toml"), edited).unwrap();
    out
}

async fn detect(dir: &Path, video: &Path, model: &Path, budget: f64) -> Summary {
    let mut cfg = test_config(dir, video);
    cfg.model.source = model.display().to_string();
    cfg.model.cpu_budget = budget;
    // The rate, not the gate, is under test: every sampled frame runs the backbone.
    cfg.motion.enabled = false;
    edgewatch::detector::run(cfg, CancellationToken::new()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_the_rate_falls_to_the_models_minimum_and_the_event_still_comes() {
    init_logs();
    // 8 s calm, 10 s bright, 8 s calm: the burst outlasts the head's window even at 2.5 fps
    // (16 features span 6.4 s), so the window mean crosses the threshold at either rate.
    let (video, burst_start, burst_end) =
        fixture_video(&["--size", "320x240", "--calm", "8", "--burst", "10", "--after", "8"]);
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_range(dir.path(), 2.5);

    // A budget no machine exceeds: the manifest's rate throughout.
    let full = detect(&dir.path().join("full"), &video, &model, 64.0).await;
    // A budget every frame exceeds: down at the first period (2 s of media time) to the floor.
    let low = detect(&dir.path().join("low"), &video, &model, 1e-6).await;
    let times = |s: &Summary| s.events.iter().map(|e| e.trigger_at).collect::<Vec<_>>();
    println!(
        "full: {} sampled at {} fps, {} changes, events at {:?}; low: {} sampled at {} fps, {} changes, floor {}, events at {:?}",
        full.frames_inferred,
        full.sample_fps,
        full.sample_rate_changes,
        times(&full),
        low.frames_inferred,
        low.sample_fps,
        low.sample_rate_changes,
        low.sample_rate_floor,
        times(&low)
    );
    assert_eq!((full.sample_fps, full.sample_rate_changes, full.sample_rate_floor), (5.0, 0, false));
    assert_eq!((low.sample_fps, low.sample_rate_changes, low.sample_rate_floor), (2.5, 1, true));
    // 26 s: about 130 sampled frames at 5 fps; 2 s at 5 then 24 s at 2.5 is about 70.
    assert!(full.frames_inferred >= 125, "{}", full.frames_inferred);
    assert!(low.frames_inferred <= 75, "{} frames sampled at the low rate", low.frames_inferred);
    // The event the model's formula predicts from the frames sampled at each rate: one, inside
    // the burst (later at 2.5 fps: each feature spans twice the time, so the window's mean rises
    // more slowly). The low run switches at the first period's end, 2 s in; which frame the
    // capture thread samples first at the new rate can differ by one, hence one low-rate frame
    // (0.4 s) of tolerance there.
    let decision = test_config(dir.path(), &video).decision;
    let predict = |low_from: f64| {
        predict_trigger_sampled(
            &video,
            decision.k,
            decision.n,
            0.5,
            |t| if t.as_secs_f64() < low_from { 5.0 } else { 2.5 },
        )
    };
    let (predicted_full, predicted_low) = (predict(f64::INFINITY), predict(2.0));
    println!("predicted: full {predicted_full} s, low {predicted_low} s");
    for (name, s, predicted, tolerance) in [("full", &full, predicted_full, 0.0), ("low", &low, predicted_low, 0.4)] {
        assert_eq!(s.events.len(), 1, "{name}: events at {:?}", times(s));
        let t = s.events[0].trigger_at;
        assert!(t > burst_start && t < burst_end, "{name}: event at {t} s, burst {burst_start}-{burst_end} s");
        assert!(
            (t - predicted).abs() <= tolerance + 1e-3,
            "{name}: event at {t} s, the formula predicts {predicted} s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_range_keeps_its_rate_and_says_the_budget_is_not_held() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "3", "--burst", "2", "--after", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let s = detect(dir.path(), &video, &test_model(), 1e-6).await;
    assert_eq!((s.sample_fps, s.sample_rate_changes, s.sample_rate_floor), (5.0, 0, true), "{s:?}");
    assert!(s.frames_inferred >= 33, "{} sampled in 7 s at 5 fps", s.frames_inferred);
}

/// A CPU hog in the inference thread (the fault-injection build's bounded busy loop, 150 ms per
/// sampled frame, switched on and off by a file) on a model with a range, paced in real time with
/// a 0.5-core budget: the rate comes down within a few seconds of the hog starting, and goes back
/// up to the manifest's once it stops. Read from the detector's /metrics, as an operator would.
#[cfg(feature = "fault-injection")]
#[test]
fn a_cpu_hog_lowers_the_rate_and_the_rate_comes_back_after_it() {
    use std::time::{Duration, Instant};

    use crate::common::{detect_child, free_port, http_get, sample_opt};

    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "10", "--burst", "2", "--after", "10"]);
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_range(dir.path(), 2.5);
    let port = free_port();
    let conf = dir.path().join("detector.toml");
    std::fs::write(
        &conf,
        format!(
            "node = \"hog\"\n[log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [source]\nkind = \"file\"\npath = \"{}\"\npace = \"realtime\"\nloop = true\n\
             [model]\nsource = \"{}\"\ncache-dir = \"{}\"\ncpu-budget = 0.5\n[motion]\nenabled = false\n\
             [clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MiB\"\n",
            video.display(),
            model.display(),
            dir.path().join("cache").display(),
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let hog = dir.path().join("hog-on");
    let (_child, addr) = detect_child(
        &conf,
        port,
        &[("EW_TEST_BUSY_INFERENCE", hog.as_os_str()), ("EW_TEST_BUSY_INFERENCE_MS", "150".as_ref())],
    );
    let fps = || sample_opt(&http_get(addr, "/metrics").1, "edgewatch_sample_fps");
    let wait_fps = |what: &str, limit: Duration, pred: &dyn Fn(f64) -> bool| -> (f64, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(f) = fps().filter(|f| pred(*f)) {
                return (f, t0.elapsed());
            }
            assert!(t0.elapsed() < limit, "{what}: sample_fps {:?} after {limit:?}", fps());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Without the hog the test model stays within half a core at 5 fps.
    wait_fps("running at the manifest's rate", Duration::from_secs(20), &|f| f == 5.0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fps(), Some(5.0), "the rate fell without a hog");
    // 150 ms of spinning per sampled frame: 0.75 cores at 5 fps, over the 0.5 budget.
    std::fs::write(&hog, b"").unwrap();
    let (low, took) = wait_fps("lowered under the hog", Duration::from_secs(10), &|f| f < 5.0);
    println!("hog on: {low} fps after {took:?}");
    std::fs::remove_file(&hog).unwrap();
    // Up one rate per two calm 2-second periods: 2.5 -> 3 -> 3.75 -> 5 takes about 12 s.
    let (back, took) = wait_fps("back to the manifest's rate", Duration::from_secs(40), &|f| f == 5.0);
    println!("hog off: {back} fps after {took:?}");
}
