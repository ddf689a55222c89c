//! `edgewatch demo`: the real pipeline on a bundled video and model, with no network and no config.
//!
//! The model is MobileNetV2 x0.35 + BiLSTM trained on synthetic stick-figure clips, and the video
//! shows such figures: calm, a fight, calm (model/demo/TRAINING.md, demo/README.md). It shows the
//! pipeline working; it is not a violence detector.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat, Pace, SourceKind, Sources};
use crate::detector::{self, Summary};

pub const DEMO_MANIFEST: &[u8] = include_bytes!("../model/demo/manifest.toml");
pub const DEMO_BACKBONE: &[u8] = include_bytes!("../model/demo/backbone.onnx");
pub const DEMO_HEAD: &[u8] = include_bytes!("../model/demo/head.onnx");
pub const DEMO_VIDEO: &[u8] = include_bytes!("../demo/demo.avi");

/// Options of the demo command.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Everything the demo writes goes below this directory.
    pub out: PathBuf,
    /// Play the video at its own frame rate instead of as fast as possible.
    pub realtime: bool,
    /// Use another video (MJPEG in AVI) instead of the bundled one.
    pub video: Option<PathBuf>,
}

/// Writes the bundled model and video under `out/assets`, returning (model dir, video path).
pub fn unpack_assets(out: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let model = out.join("assets/model");
    std::fs::create_dir_all(&model)?;
    let manifest: crate::model::Manifest =
        toml::from_str(std::str::from_utf8(DEMO_MANIFEST).map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    crate::spool::write_atomic(&model.join("manifest.toml"), DEMO_MANIFEST)?;
    crate::spool::write_atomic(&model.join(&manifest.backbone.file), DEMO_BACKBONE)?;
    crate::spool::write_atomic(&model.join(&manifest.head.file), DEMO_HEAD)?;
    let video = out.join("assets/demo.avi");
    crate::spool::write_atomic(&video, DEMO_VIDEO)?;
    Ok((model, video))
}

/// The demo's configuration: built-in defaults adjusted for a laptop, then `EDGEWATCH_*` overrides.
pub fn demo_config(opts: &DemoOptions, model: &Path, video: &Path) -> anyhow::Result<Config> {
    let mut d = Config { node: "demo".into(), camera: "demo".into(), ..Config::default() };
    d.log.format = LogFormat::Human;
    d.http.listen = "127.0.0.1:0".parse()?;
    d.source.kind = SourceKind::File;
    d.source.path = Some(opts.video.clone().unwrap_or_else(|| video.to_path_buf()));
    d.source.pace = if opts.realtime { Pace::Realtime } else { Pace::Fast };
    d.model.source = model.display().to_string();
    d.model.cache_dir = opts.out.join("model-cache");
    d.clip.spool_dir = opts.out.join("spool");
    d.clip.min_free_space = bytesize::ByteSize::mib(16);
    d.archive.target = opts.out.join("archive").display().to_string();
    // The watchdog delivers to an outbox of .eml files (no SMTP server configured) and keeps
    // the delivered clips so the demo's spool can be looked at afterwards.
    d.smtp.outbox_dir = opts.out.join("outbox");
    d.watch.keep_delivered = true;
    d.watch.min_gap = Duration::ZERO;
    Ok(Config::load_with_defaults(d, &Sources::from_process(None, false))?)
}

/// Runs the demo to the end of the video and returns what happened.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<(Config, Summary)> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let out = opts.out.canonicalize()?;
    let opts = DemoOptions { out, ..opts };
    let (model, video) = unpack_assets(&opts.out).context("unpacking the bundled demo assets")?;
    let cfg = demo_config(&opts, &model, &video)?;
    let watch_stop = shutdown.child_token();
    let watchdog = crate::watchdog::start(cfg.clone(), watch_stop.clone()).await.context("starting the watchdog")?;
    let running = detector::start(cfg.clone(), shutdown).await?;
    tracing::info!(detector = %format!("http://{}/metrics", running.http_addr),
        watchdog = %format!("http://{}/metrics", watchdog.http_addr), "demo running");
    let summary = running.wait().await?;
    // Give the watchdog time to deliver what the detector wrote, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && !all_delivered(&cfg.clip.spool_dir) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch_stop.cancel();
    watchdog.wait().await?;
    Ok((cfg, summary))
}

fn all_delivered(spool: &Path) -> bool {
    crate::spool::complete_clips(spool).is_ok_and(|ids| {
        ids.iter()
            .all(|id| crate::watchdog::state::Delivery::load(spool, id).ok().flatten().is_some_and(|d| d.finished()))
    })
}

/// The short human summary printed at the end.
pub fn render_summary(cfg: &Config, s: &Summary, elapsed: Duration) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\nedgewatch demo: {} frames captured, {} inferred, {} event(s) in {:.1} s\n",
        s.frames_captured,
        s.frames_inferred,
        s.events.len(),
        elapsed.as_secs_f64()
    ));
    for e in &s.events {
        out.push_str(&format!(
            "  event {}  at {:>6.2} s of video  peak score {:.3}  clip {:.1} s, {} frames, {} KiB\n    {}\n",
            e.event_id,
            e.trigger_at,
            e.peak_score,
            e.duration,
            e.frames,
            e.clip_bytes / 1024,
            e.clip.display()
        ));
    }
    let emails = std::fs::read_dir(&cfg.smtp.outbox_dir)
        .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0);
    out.push_str(&format!(
        "  spool:   {}\n  archive: {} ({} clip(s) archived)\n  outbox:  {} ({} alert email(s), .eml: a first alert with the still, then the clip)\n",
        cfg.clip.spool_dir.display(),
        cfg.archive.target,
        s.archived.len(),
        cfg.smtp.outbox_dir.display(),
        emails
    ));
    for (id, why) in &s.without_clip {
        out.push_str(&format!("  event {id}  closed without a clip: {why}\n"));
    }
    if s.clip_failures > 0 {
        out.push_str(&format!("  {} event(s) not closed before the end (see the log)\n", s.clip_failures));
    }
    out.push_str("  (demo model: trained on synthetic stick figures only; it is not a violence detector)\n");
    out
}
