//! Motion gating (#26) through the whole detector: a still scene keeps the backbone idle, motion
//! opens the gate, a lighting change re-baselines instead, a mask hides what it covers, and gating
//! on or off decides the same events. The videos are made here with ffmpeg (a textured still
//! scene with temporal sensor noise of sigma about 4 grey levels, a person-sized block walking
//! across, the lights going up); the test model scores brightness (model/README.md), and these
//! scenes stay far below half its threshold, so only motion opens the gate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use edgewatch::detector::Summary;
use tokio_util::sync::CancellationToken;

use crate::common::{demo_model, fixture_video, init_logs, repeated_video, repo, test_config};

/// 12 s of 640x480 MJPEG at 15 fps: a grey grid with noise; optionally a 40x100 block walking
/// left to right from 4 s to 8 s, and the lights going up by 20 % of full scale from 10 s.
fn scene(dir: &Path, walker: bool, lights_on: bool) -> PathBuf {
    let out = dir.join(format!("scene-walker{walker}-lights{lights_on}.avi"));
    let mut graph = String::from("color=c=0x505050:s=640x480:r=15:d=12,drawgrid=w=64:h=48:t=2:c=0x303030");
    if walker {
        graph = format!(
            "{graph}[bg];color=c=0xd0d0d0:s=40x100:r=15[box];\
             [bg][box]overlay=x='40+(t-4)*120':y=190:eval=frame:enable='between(t,4,8)':shortest=1"
        );
    }
    graph.push_str(",noise=alls=7:allf=t");
    if lights_on {
        graph.push_str(",eq=brightness=0.2:enable='gte(t,10)'");
    }
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &graph, "-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj422p"])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(st.success(), "ffmpeg could not make {}", out.display());
    out
}

async fn detect(dir: &Path, video: &Path, gating: bool, edit: impl FnOnce(&mut edgewatch::config::Config)) -> Summary {
    let mut cfg = test_config(dir, video);
    cfg.motion.enabled = gating;
    edit(&mut cfg);
    edgewatch::detector::run(cfg, CancellationToken::new()).await.unwrap()
}

fn counts(s: &Summary) -> String {
    format!(
        "{} sampled, {} backbone runs, {} skipped, {} re-baselines, {} events",
        s.frames_inferred,
        s.backbone_runs,
        s.backbone_skipped,
        s.motion_rebaselines,
        s.events.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_scene_idles_the_backbone_motion_opens_it_and_light_rebaselines() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (still, walk, light) =
        (scene(dir.path(), false, false), scene(dir.path(), true, false), scene(dir.path(), false, true));
    // 12 s at the manifest's 5 samples/s; the backbone runs once per max-skip on a still scene.
    let sampled = 60;
    let per_skip = 12 / edgewatch::config::Config::default().motion.max_skip.as_secs();

    // Gating off: every sampled frame runs the backbone, as before motion gating existed.
    let off = detect(&dir.path().join("off"), &still, false, |_| {}).await;
    assert_eq!(
        (off.frames_inferred, off.backbone_runs, off.backbone_skipped),
        (sampled, sampled, 0),
        "{}",
        counts(&off)
    );

    // Still with noise: only the first frame and one per max-skip run.
    let s = detect(&dir.path().join("still"), &still, true, |_| {}).await;
    assert_eq!(s.frames_inferred, sampled, "{}", counts(&s));
    assert_eq!(s.backbone_runs + s.backbone_skipped, sampled, "{}", counts(&s));
    assert!(s.backbone_runs <= per_skip + 2, "the noise opened the gate: {}", counts(&s));
    assert!(s.backbone_runs > per_skip, "max-skip forced no run: {}", counts(&s));
    assert_eq!(s.motion_rebaselines, 0, "{}", counts(&s));

    // The walker (4 s to 8 s, plus the 1 s hold) opens it for at least those 25 samples.
    let w = detect(&dir.path().join("walk"), &walk, true, |_| {}).await;
    assert!(w.backbone_runs >= 20 + 4, "the walker did not open the gate: {}", counts(&w));
    assert!(w.backbone_runs <= 25 + 8 + 2, "the gate stayed open after the walker: {}", counts(&w));

    // The same walker inside a mask: as still as the still scene.
    let masked = detect(&dir.path().join("masked"), &walk, true, |c| {
        c.motion.mask = vec![vec![[0.0, 170.0], [640.0, 170.0], [640.0, 310.0], [0.0, 310.0]]];
    })
    .await;
    assert!(masked.backbone_runs <= per_skip + 2, "motion inside the mask opened the gate: {}", counts(&masked));

    // Lights up at 10 s: one re-baseline (which runs the backbone on the new scene), not an open
    // gate for the 2 s that follow.
    let l = detect(&dir.path().join("light"), &light, true, |_| {}).await;
    assert_eq!(l.motion_rebaselines, 1, "{}", counts(&l));
    assert!(l.backbone_runs <= per_skip + 2 + 1, "the lighting change held the gate open: {}", counts(&l));
    for (name, s) in [("still", &s), ("walk", &w), ("masked", &masked), ("light", &l)] {
        println!("{name}: {}", counts(s));
    }
}

/// Gating on and off decide the same events, within one sampled frame (0.2 s): on the
/// brightness contract model's calm/burst/calm fixture; on the spool tests' short bursts played
/// six times with their 3-second clips and 1-second cooldown (an event there ends by `max-length`
/// while the score is still high, so a score held high a frame too long opens a second one); and
/// on the demo video with the demo model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gating_on_and_off_decide_the_same_events() {
    init_logs();
    let (fixture, _, _) = fixture_video(&["--size", "640x480", "--calm", "8", "--burst", "4", "--after", "8"]);
    let (short, _, _) = fixture_video(&["--size", "640x480", "--calm", "2", "--burst", "3", "--after", "3"]);
    let short = repeated_video(&short, 6);
    let demo_video = repo().join("demo/demo.avi");
    for (name, video) in [("fixture", fixture), ("short bursts", short), ("demo", demo_video)] {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for gating in [false, true] {
            let s = detect(&dir.path().join(format!("gating-{gating}")), &video, gating, |c| match name {
                "demo" => c.model.source = demo_model().display().to_string(),
                "short bursts" => {
                    c.clip.pre_roll = Duration::from_secs(1);
                    c.clip.post_roll = Duration::from_secs(1);
                    c.clip.max_length = Duration::from_secs(3);
                    c.decision.cooldown = Duration::from_secs(1);
                }
                _ => {}
            })
            .await;
            println!("{name}, gating {gating}: {}", counts(&s));
            runs.push(s);
        }
        let (off, on) = (&runs[0], &runs[1]);
        // Off is the detector without a gate: every sampled frame runs the backbone.
        assert_eq!(
            (off.backbone_runs, off.backbone_skipped, off.motion_rebaselines),
            (off.frames_inferred, 0, 0),
            "{name}"
        );
        assert!(!off.events.is_empty(), "{name}: no event to compare");
        // The fixtures' calm parts are still enough for the gate to shut at times (the demo's
        // stick figures never stop moving, so there it stays open: same decisions trivially).
        if name != "demo" {
            assert!(on.backbone_skipped > 0, "{name}: the gate never shut, nothing was compared");
        }
        let times = |s: &Summary| s.events.iter().map(|e| e.trigger_at).collect::<Vec<_>>();
        assert_eq!(off.events.len(), on.events.len(), "{name}: off {:?}, on {:?}", times(off), times(on));
        for (a, b) in times(off).iter().zip(times(on)) {
            assert!((a - b).abs() <= 0.2 + 1e-3, "{name}: event at {a} s without gating, {b} s with");
        }
    }
}
