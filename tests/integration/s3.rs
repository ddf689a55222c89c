//! Archive and model fetch against a real S3-compatible server (s3s-fs, signature-checking).

use std::time::Duration;

use edgewatch::config::Secret;
use edgewatch::model;
use edgewatch::s3::S3Client;
use edgewatch::spool;
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// The server is down when clips are made, comes back later; then a restart with a pending
/// upload. Every clip ends up archived exactly once, byte-identical, under a predictable key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_rides_out_an_outage_and_a_restart() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let mut server = S3Server::new(&dir.path().join("s3"));
    server.mkbucket("clips");
    let mut cfg = test_config(dir.path(), &video);
    server.configure(&mut cfg);
    cfg.archive.target = "s3://clips/site-a".into();

    // 1. Server down for the whole run: the clip is written, the upload keeps failing, and
    //    shutdown leaves it queued (no marker) for the next start.
    let shutdown = CancellationToken::new();
    let running = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let spool_dir = cfg.clip.spool_dir.clone();
    let id = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(120), "a clip in the spool", || {
            spool::complete_clips(&spool_dir).unwrap_or_default().pop()
        })
    })
    .await
    .unwrap();
    let addr = running.http_addr;
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(60), "two failed upload attempts, queue depth 1", || {
            let (_, body) = http_get(addr, "/metrics");
            let failed = body
                .lines()
                .find_map(|l| l.strip_prefix("edgewatch_uploads_total{result=\"failed\"} "))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            (failed >= 2.0 && body.contains("edgewatch_upload_queue_depth 1\n")).then_some(())
        })
    })
    .await
    .unwrap();
    shutdown.cancel();
    let summary = running.wait().await.unwrap();
    assert!(summary.archived.is_empty());
    assert!(!spool::ClipPaths::new(&cfg.clip.spool_dir, &id).archived.exists());

    // 2. Restart with the server still down, bring it up while the detector runs.
    let shutdown = CancellationToken::new();
    let mut cfg2 = cfg.clone();
    cfg2.source.path = Some(calm_video());
    let running = edgewatch::detector::start(cfg2, shutdown.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.up();
    let summary =
        tokio::time::timeout(Duration::from_secs(120), running.wait()).await.expect("uploads drained").unwrap();
    assert_eq!(summary.events.len(), 0);
    assert_eq!(summary.archived, vec![id.clone()]);

    // Exactly the clip and its sidecar, byte-identical, at node/date/id.
    let side = spool::read_sidecar(&spool::ClipPaths::new(&cfg.clip.spool_dir, &id).sidecar).unwrap();
    let day = side.event_time.format("%Y-%m-%d");
    let objects = server.objects("clips");
    let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![format!("site-a/test-node/{day}/{id}.json"), format!("site-a/test-node/{day}/{id}.mp4")],
        "{keys:?}"
    );
    let paths = spool::ClipPaths::new(&cfg.clip.spool_dir, &id);
    assert_eq!(objects[1].1, std::fs::read(&paths.clip).unwrap());
    assert_eq!(objects[0].1, std::fs::read(&paths.sidecar).unwrap());
    let marker: spool::Archived = serde_json::from_slice(&std::fs::read(&paths.archived).unwrap()).unwrap();
    assert_eq!(marker.clip_url, format!("s3://clips/site-a/test-node/{day}/{id}.mp4"));

    // Each object was PUT once, as the server saw it: the outage's retries never reached it,
    // and the restart uploaded what was pending, once.
    for k in &keys {
        assert_eq!(server.puts("clips", k), 1, "{k}: {:?}", server.requests());
    }

    // 3. Another start finds nothing pending and uploads nothing again: counted at the server.
    assert!(edgewatch::archive::pending(&cfg.clip.spool_dir).unwrap().is_empty());
    let before = server.requests().len();
    let mut cfg3 = cfg.clone();
    cfg3.source.path = Some(calm_video());
    let summary = edgewatch::detector::run(cfg3, CancellationToken::new()).await.unwrap();
    assert!(summary.archived.is_empty() && summary.events.is_empty(), "{summary:#?}");
    assert_eq!(server.requests().len(), before, "no request at all: {:?}", &server.requests()[before..]);
    shutdown.cancel();
}

fn calm_video() -> std::path::PathBuf {
    fixture_video(&["--size", "320x240", "--calm", "6", "--burst", "1", "--after", "1"]).0
}

/// Multipart uploads produce the same object as a single PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"));
    server.mkbucket("big");
    let mut cfg = edgewatch::config::Config::default();
    server.configure(&mut cfg);
    let client = S3Client::new(&cfg.s3).await;
    let data: Vec<u8> = (0..(11 * 1024 * 1024 + 123)).map(|i| (i * 7 % 251) as u8).collect();
    let res = client
        .put(
            "big",
            "a/b.bin",
            bytes::Bytes::from(data.clone()),
            "application/octet-stream",
            5 * 1024 * 1024,
            5 * 1024 * 1024,
        )
        .await
        .unwrap();
    assert_eq!(res.parts, 3);
    assert_eq!(client.get("big", "a/b.bin").await.unwrap(), data);
    assert_eq!(client.list("big", "a/").await.unwrap(), vec!["a/b.bin".to_string()]);
}

/// Model fetch: from S3 into the cache; from the cache when S3 is down; refused when corrupt;
/// a clear error naming bucket and key when neither works; wrong credentials are rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_fetch_verify_and_cache() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut server = S3Server::start(&dir.path().join("s3"));
    server.mkbucket("models");
    let mut cfg = test_config(dir.path(), std::path::Path::new("/unused.avi"));
    server.configure(&mut cfg);
    cfg.model.source = "s3://models/edgewatch/demo".into();
    let client = S3Client::new(&cfg.s3).await;
    for f in ["manifest.toml", "backbone.onnx", "head.onnx"] {
        let data = std::fs::read(test_model().join(f)).unwrap();
        client
            .put("models", &format!("edgewatch/demo/{f}"), data.into(), "application/octet-stream", usize::MAX, 5 << 20)
            .await
            .unwrap();
    }
    let local = model::ModelBundle::from_dir(&test_model(), "").unwrap();

    let fetched = model::load(&cfg, Some(&client)).await.unwrap();
    assert_eq!(fetched.manifest_sha256, local.manifest_sha256);
    assert_eq!(fetched.backbone, local.backbone);
    let current = std::fs::read_to_string(cfg.model.cache_dir.join("current")).unwrap();
    assert_eq!(current.trim(), local.manifest_sha256);

    // Wrong secret: the server checks signatures and refuses; the cache still serves.
    let mut wrong = cfg.clone();
    wrong.s3.secret_access_key = Some(Secret::new("not-the-secret"));
    let wrong_client = S3Client::new(&wrong.s3).await;
    let err = wrong_client.get("models", "edgewatch/demo/manifest.toml").await.unwrap_err();
    assert!(matches!(err, edgewatch::s3::S3Error::Auth(_)), "{err}");
    assert_eq!(err.class(), "auth");
    assert!(!err.to_string().contains("not-the-secret"));

    // S3 down: start from the verified cache.
    server.down();
    let cached = model::load(&cfg, Some(&client)).await.unwrap();
    assert_eq!(cached.manifest_sha256, local.manifest_sha256);

    // S3 down and no cache: a clear error naming the bucket and key.
    let mut nocache = cfg.clone();
    nocache.model.cache_dir = dir.path().join("empty-cache");
    let e = format!("{:#}", model::load(&nocache, Some(&client)).await.unwrap_err());
    assert!(e.contains("s3://models/edgewatch/demo/manifest.toml") && e.contains("no verified cached copy"), "{e}");

    // A corrupted backbone in S3 is refused (and never replaces the cache).
    server.up();
    client
        .put(
            "models",
            "edgewatch/demo/backbone.onnx",
            b"corrupt".to_vec().into(),
            "application/octet-stream",
            usize::MAX,
            5 << 20,
        )
        .await
        .unwrap();
    let e = format!("{:#}", model::load(&nocache, Some(&client)).await.unwrap_err());
    assert!(e.contains("sha256") && e.contains("backbone.onnx"), "{e}");
    assert!(!nocache.model.cache_dir.join("current").exists());
}

/// With no keys in the configuration, the AWS credential chain is used: the keys in the
/// detector's environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) archive the clip, and
/// the S3 server, which checks signatures, accepts them.
#[test]
fn without_keys_in_the_config_the_aws_credential_chain_is_used() {
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"));
    server.mkbucket("clips");
    let conf = dir.path().join("detector.toml");
    std::fs::write(
        &conf,
        file_detector_toml("chain", &video, &dir.path().join("cache"), &dir.path().join("spool"))
            + &format!(
                "[archive]\ntarget = \"s3://clips/chain\"\n[s3]\nendpoint = \"{}\"\nforce-path-style = true\n",
                server.endpoint()
            ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .arg("detect")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    let keys: Vec<String> = server.objects("clips").into_iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k.starts_with("chain/chain/") && k.ends_with(".mp4")), "{keys:?}\n{log}");
    assert!(!log.contains(SECRET_KEY) && !log.contains(ACCESS_KEY), "the environment's keys are not logged");
}
