//! Durable events end to end: the detector writes each event the moment it is decided, the
//! watchdog sends a first alert with the still at once and the clip in a reply, and neither a
//! SIGKILL nor a full spool loses an event. Everything is counted at the servers: messages the
//! SMTP server stored, objects in the S3-compatible store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgewatch::config::{FirstAlert, Pace};
use edgewatch::spool::{self, Sidecar};
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::watchdog::{header, parts, plain_smtp, wait_spool_empty, SmtpServer};

/// One stored message, as the server has it.
#[derive(Debug, Clone)]
struct Mail {
    event: String,
    kind: String,
    message_id: String,
    in_reply_to: String,
    references: String,
    subject: String,
    raw: Vec<u8>,
}

fn mails(server: &SmtpServer) -> Vec<Mail> {
    server
        .messages()
        .into_iter()
        .map(|(raw, _)| Mail {
            event: header(&raw, "X-Edgewatch-Event"),
            kind: header(&raw, "X-Edgewatch-Alert"),
            message_id: header(&raw, "Message-ID"),
            in_reply_to: header(&raw, "In-Reply-To"),
            references: header(&raw, "References"),
            subject: header(&raw, "Subject"),
            raw,
        })
        .collect()
}

fn text_of(raw: &[u8]) -> String {
    parts(raw)
        .into_iter()
        .filter(|(t, _, _)| t == "text/plain")
        .map(|(_, _, b)| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// A decided event reaches the SMTP server twice: first, while its clip is still being
/// recorded, the still with "clip follows"; then the clip, in a reply threaded under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_alert_leaves_at_the_decision_and_the_clip_follows_in_a_reply() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.source.path = Some(video);
    cfg.source.pace = Pace::Realtime;
    cfg.archive.target = dir.path().join("archive").display().to_string();
    assert_eq!(cfg.alert.first, FirstAlert::Snapshot, "the default");
    let shutdown = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let detector = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();

    server.wait_for(1, "the first alert").await;
    // It left before the clip existed: the event is still open in the spool.
    let open = spool::open_events(&cfg.clip.spool_dir).unwrap();
    assert_eq!(open.len(), 1, "the clip is not written yet when the first alert is at the server");
    let summary = detector.wait().await.unwrap();
    server.wait_for(2, "the clip email").await;
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery, archive and delete").await;
    shutdown.cancel();
    watchdog.wait().await.unwrap();

    let m = mails(&server);
    assert_eq!(m.len(), 2, "{m:#?}");
    let id = &summary.events[0].event_id;
    let (first, clip) = (&m[0], &m[1]);
    assert_eq!((first.event.as_str(), first.kind.as_str()), (id.as_str(), "snapshot"));
    assert_eq!((clip.event.as_str(), clip.kind.as_str()), (id.as_str(), "clip"));
    assert!(first.in_reply_to.is_empty());
    assert_eq!(clip.in_reply_to, first.message_id, "the clip email replies to the first alert");
    assert_eq!(clip.references, first.message_id);
    assert_eq!(clip.subject, format!("Re: {}", first.subject));
    assert!(first.subject.contains("cam0") && first.subject.contains("score"), "{}", first.subject);
    assert!(text_of(&first.raw).contains("The clip follows"), "{}", text_of(&first.raw));
    // The first alert carries the still inline and no clip; the reply carries the clip.
    let fp = parts(&first.raw);
    assert!(
        fp.iter().any(|(t, cid, b)| t == "image/jpeg" && cid.contains("still") && b.ends_with(&[0xff, 0xd9])),
        "{fp:?}"
    );
    assert!(!fp.iter().any(|(t, _, _)| t == "video/mp4"));
    let archived = walk_files(&dir.path().join("archive"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "mp4"))
        .unwrap();
    let mp4 = parts(&clip.raw).into_iter().find(|(t, _, _)| t == "video/mp4").expect("the clip attached").2;
    assert_eq!(mp4, std::fs::read(archived).unwrap(), "the archived clip, byte for byte");
}

/// `alert.first = "none"` is the seed's behaviour: one email per event, with the clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_first_none_sends_one_email_with_the_clip() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.source.path = Some(video);
    cfg.archive.target = dir.path().join("archive").display().to_string();
    cfg.alert.first = FirstAlert::None;
    let shutdown = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let summary = edgewatch::detector::run(cfg.clone(), shutdown.clone()).await.unwrap();
    assert_eq!(summary.events.len(), 1);
    // The positive signal: the event was delivered, archived and deleted; only then count.
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery, archive and delete").await;
    shutdown.cancel();
    watchdog.wait().await.unwrap();
    let m = mails(&server);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert_eq!((m[0].kind.as_str(), m[0].in_reply_to.as_str()), ("clip", ""));
    assert!(!m[0].subject.starts_with("Re:"));
    assert!(parts(&m[0].raw).iter().any(|(t, _, _)| t == "video/mp4"));
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every file a reader can see in the spool is whole: the rename protocol, checked while the
/// spool fills up. Returns a description of the first partial file found.
fn partial_file(spool_dir: &Path) -> Option<String> {
    for e in std::fs::read_dir(spool_dir).ok()?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || p.is_dir() {
            continue; // .tmp/ (work files), .reserve, .watchdog/
        }
        let Ok(data) = std::fs::read(&p) else { continue }; // deleted meanwhile
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        let ok = match ext {
            "json" | "event" | "delivery" | "archived" => serde_json::from_slice::<serde_json::Value>(&data).is_ok(),
            "jpg" => data.starts_with(&[0xff, 0xd8]) && data.ends_with(&[0xff, 0xd9]),
            // The sidecar (renamed after the clip) names the clip's size and digest.
            "mp4" => match spool::read_sidecar(&p.with_extension("json")) {
                Ok(s) => s.clip_bytes == data.len() as u64 && s.clip_sha256 == edgewatch::model::sha256_hex(&data),
                Err(_) => data.len() > 8 && &data[4..8] == b"ftyp",
            },
            _ => true,
        };
        if !ok {
            return Some(format!("{name} ({} bytes)", data.len()));
        }
    }
    None
}

/// 3-second clips of `video` (1 s before, up to 3 s in all, 1 s apart) into `spool_dir`,
/// archived to a directory beside it, and a watchdog that keeps no free-space floor of its own.
fn short_clips_on_a_small_spool(cfg: &mut edgewatch::config::Config, video: &Path, spool_dir: &Path, dir: &Path) {
    cfg.source.path = Some(video.to_path_buf());
    cfg.clip.spool_dir = spool_dir.to_path_buf();
    cfg.clip.pre_roll = Duration::from_secs(1);
    cfg.clip.post_roll = Duration::from_secs(1);
    cfg.clip.max_length = Duration::from_secs(3);
    cfg.decision.cooldown = Duration::from_secs(1);
    cfg.archive.target = dir.join("archive").display().to_string();
    cfg.watch.spool_min_free = bytesize::ByteSize::kib(1);
}

/// A spool on a tmpfs that holds about two clips, and a slow SMTP server that frees it slowly:
/// every event is alerted at once, every clip is held in memory and delivered once space frees,
/// `disk_full` is counted, `/readyz` says so meanwhile, and no reader ever sees a partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_holds_clips_until_space_frees_and_loses_no_event() {
    init_logs();
    let (base, _, _) = fixture_video(&["--size", "640x480", "--calm", "2", "--burst", "3", "--after", "3"]);
    let events = 6;
    let video = repeated_video(&base, events);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // Room for two of these clips (about 530 kB each) beside the reserve, the stills and records.
    let _tmpfs = Tmpfs::mount(&spool_dir, 1400 * 1024);
    // The relay is down at first, so nothing is delivered, nothing deleted, and the spool fills;
    // then it comes up (slow: each email takes a second) and frees space as it delivers.
    let (mut server, mut cfg) = crate::watchdog::plain_smtp_down(dir.path(), &["--slow", "1"]);
    short_clips_on_a_small_spool(&mut cfg, &video, &spool_dir, dir.path());
    cfg.clip.min_free_space = bytesize::ByteSize::kib(64);
    cfg.clip.reserve = bytesize::ByteSize::kib(128);
    let shutdown = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let detector = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let addr = detector.http_addr;

    // Watch the spool as a reader would, and the detector's readiness, until the run ends.
    let watch = {
        let spool_dir = spool_dir.clone();
        let stop = shutdown.child_token();
        let stop2 = stop.clone();
        let h = std::thread::spawn(move || {
            let (mut scans, mut partial, mut not_ready) = (0u64, None, None);
            while !stop2.is_cancelled() {
                scans += 1;
                if partial.is_none() {
                    partial = partial_file(&spool_dir);
                }
                let (code, body) = http_get(addr, "/readyz");
                if code == 503 && body.contains("spool full") {
                    not_ready.get_or_insert(body);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (scans, partial, not_ready)
        });
        (stop, h)
    };
    // Full: a clip could not be written and is held in memory.
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(60), "a clip held for want of space", || {
            (metric(addr, "edgewatch_clips_held") >= 1.0).then_some(())
        })
    })
    .await
    .unwrap();
    server.up();
    let summary = detector.wait().await.unwrap();
    wait_spool_empty(&spool_dir, Duration::from_secs(120), "every event delivered, archived and deleted").await;
    watch.0.cancel();
    let (scans, partial, not_ready) = watch.1.join().unwrap();
    let body = http_get(addr, "/metrics").1;
    shutdown.cancel();
    watchdog.wait().await.unwrap();

    assert_eq!(summary.events.len(), events, "every event closed with its clip: {summary:#?}");
    assert!(summary.without_clip.is_empty() && summary.clip_failures == 0, "{summary:#?}");
    assert!(partial.is_none(), "a reader saw a partial file: {partial:?}");
    assert!(scans > 100, "the spool was watched throughout ({scans} scans)");
    let disk_full = sample(&body, "edgewatch_clip_write_failed_total{reason=\"disk_full\"}");
    assert!(disk_full >= 1.0, "disk_full counted:\n{body}");
    assert_eq!(sample(&body, "edgewatch_clips_dropped_total"), 0.0, "{body}");
    let nr = not_ready.expect("/readyz reported the full spool while clips were held");
    assert!(nr.contains("held in memory"), "{nr}");
    // At the server: each event once as a first alert and once with its clip.
    let m = mails(&server);
    let ids: BTreeSet<&String> = summary.events.iter().map(|e| &e.event_id).collect();
    for id in &ids {
        let of = |kind: &str| m.iter().filter(|x| &&x.event == id && x.kind == kind).count();
        assert_eq!((of("snapshot"), of("clip"), of("no-clip")), (1, 1, 0), "{id}");
    }
    assert_eq!(m.len(), 2 * events, "nothing else was sent");
    println!("spool full: {events} events, {} first alerts, {} clip emails, disk_full counted {disk_full}, spool scans {scans}",
        m.iter().filter(|x| x.kind == "snapshot").count(), m.iter().filter(|x| x.kind == "clip").count());
}

/// A spool filled to the last byte while nobody delivered (a filler file takes what the events
/// left), then the watchdog starts with the relay up: it still sends every event's emails and
/// deletes the events, keeping their delivery state in memory while the spool cannot take it.
/// Before, every pass failed on writing that state (ENOSPC), nothing was ever sent and nothing
/// freed the spool: a fight turned into silence. Counted at the SMTP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_full_to_the_last_byte_still_delivers_and_frees_itself() {
    init_logs();
    let (base, _, _) = fixture_video(&["--size", "320x240", "--calm", "2", "--burst", "3", "--after", "3"]);
    let video = repeated_video(&base, 2);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool_dir, 3 << 20);
    let (mut server, mut cfg) = crate::watchdog::plain_smtp_down(dir.path(), &[]);
    short_clips_on_a_small_spool(&mut cfg, &video, &spool_dir, dir.path());
    // The detector alone: its events wait in the spool, clips written and archived.
    let summary = edgewatch::detector::run(cfg.clone(), CancellationToken::new()).await.unwrap();
    assert_eq!(summary.events.len(), 2, "{summary:#?}");
    // What is left goes to a filler, to the last byte.
    fill_up(&spool_dir.join(".filler"));
    assert!(spool::free_space(&spool_dir).unwrap() < 4096, "the spool is full");
    server.up();
    let shutdown = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    wait_spool_empty(&spool_dir, Duration::from_secs(60), "every event delivered and deleted from a full spool").await;
    shutdown.cancel();
    watchdog.wait().await.unwrap();
    let m = mails(&server);
    for e in &summary.events {
        let of = |kind: &str| m.iter().filter(|x| x.event == e.event_id && x.kind == kind).count();
        assert_eq!(
            of("clip"),
            1,
            "{}: one clip email; got {:?}",
            e.event_id,
            m.iter().map(|x| (&x.event, &x.kind)).collect::<Vec<_>>()
        );
    }
}

/// A spool with room for events but never for a clip, and a hold limit below one clip: each
/// clip is dropped with a counter and an error, and its event is still alerted, then closed
/// with "clip dropped".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_that_cannot_be_held_is_dropped_and_its_event_still_alerted() {
    init_logs();
    let (base, _, _) = fixture_video(&["--size", "640x480", "--calm", "2", "--burst", "3", "--after", "3"]);
    let video = repeated_video(&base, 2);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool_dir, 512 * 1024);
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    short_clips_on_a_small_spool(&mut cfg, &video, &spool_dir, dir.path());
    // Room for records and stills, never for a clip; and no clip may be held.
    cfg.clip.min_free_space = bytesize::ByteSize::mib(4);
    cfg.clip.hold_max = bytesize::ByteSize::kib(1);
    cfg.clip.reserve = bytesize::ByteSize::kib(64);
    let shutdown = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let detector = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let addr = detector.http_addr;
    let summary = detector.wait().await.unwrap();
    wait_spool_empty(&spool_dir, Duration::from_secs(60), "both events delivered, archived and deleted").await;
    let body = http_get(addr, "/metrics").1;
    shutdown.cancel();
    watchdog.wait().await.unwrap();
    assert!(summary.events.is_empty(), "{summary:#?}");
    assert_eq!(summary.without_clip.len(), 2, "{summary:#?}");
    assert!(summary.without_clip.iter().all(|(_, why)| why.starts_with("clip dropped")), "{summary:#?}");
    assert_eq!(sample(&body, "edgewatch_clips_dropped_total"), 2.0, "{body}");
    assert_eq!(sample(&body, "edgewatch_events_without_clip_total{reason=\"spool_full\"}"), 2.0, "{body}");
    let m = mails(&server);
    for (id, _) in &summary.without_clip {
        let first = m.iter().find(|x| &x.event == id && x.kind == "snapshot").expect("first alert");
        let follow = m.iter().find(|x| &x.event == id && x.kind == "no-clip").expect("follow-up");
        assert_eq!(follow.in_reply_to, first.message_id);
        assert!(text_of(&follow.raw).contains("clip dropped"), "{}", text_of(&follow.raw));
    }
    assert_eq!(m.len(), 4);
    // The archive keeps what there is of each event: its sidecar and its still.
    let archived = walk_files(&dir.path().join("archive"));
    assert_eq!(archived.iter().filter(|p| p.extension().is_some_and(|x| x == "json")).count(), 2, "{archived:?}");
    assert_eq!(archived.iter().filter(|p| p.extension().is_some_and(|x| x == "jpg")).count(), 2, "{archived:?}");
}

/// A small xorshift: the kill schedule is random but repeatable (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + Duration::from_micros(self.next() % (hi - lo).as_micros() as u64)
    }
}

/// SIGKILL of the detector at random moments and at each step of an event (after the decision,
/// after the event's record, mid-encode, after the clip's rename before its sidecar), restarted
/// each time, with a real watchdog, SMTP server and S3-compatible store throughout: every event
/// on record (in the archive, or still in the spool) gets exactly one first alert and exactly
/// one follow-up at the SMTP server, threaded under it.
#[cfg(feature = "fault-injection")]
#[test]
fn sigkill_of_the_detector_loses_no_event() {
    use std::os::unix::process::ExitStatusExt;
    let (base, _, _) = fixture_video(&["--size", "320x240", "--calm", "2", "--burst", "3", "--after", "3"]);
    let video = repeated_video(&base, 40);
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), &[]);
    let s3 = S3Server::start(&dir.path().join("s3"));
    s3.mkbucket("clips");
    let spool_dir = dir.path().join("spool");
    let journal = dir.path().join("frames");
    // What both roles share: names, the spool, the archive and its credentials.
    let shared = format!(
        "node = \"kill\"\ncamera = \"cam0\"\n[log]\nformat = \"json\"\n\
         [archive]\ntarget = \"s3://clips/kill\"\nretry-min = \"200ms\"\nretry-max = \"1s\"\n\
         [s3]\nendpoint = \"{}\"\nforce-path-style = true\naccess-key-id = \"{ACCESS_KEY}\"\n\
         secret-access-key = \"{SECRET_KEY}\"\ntimeout = \"5s\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        s3.endpoint()
    );
    let detector_conf = dir.path().join("detector.toml");
    std::fs::write(
        &detector_conf,
        format!(
            "{shared}[clip]\nspool-dir = \"{}\"\npre-roll = \"1s\"\npost-roll = \"1s\"\nmax-length = \"3s\"\n\
             min-free-space = \"1 MiB\"\nframe-journal = \"{}\"\n\
             [source]\nkind = \"file\"\npath = \"{}\"\npace = \"fast\"\n\
             [model]\nsource = \"{}\"\ncache-dir = \"{}\"\n[decision]\ncooldown = \"1s\"\n",
            spool_dir.display(),
            journal.display(),
            video.display(),
            test_model().display(),
            dir.path().join("model-cache").display()
        ),
    )
    .unwrap();
    let watch_conf = dir.path().join("watchdog.toml");
    std::fs::write(
        &watch_conf,
        format!(
            "{shared}[clip]\nspool-dir = \"{}\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"edgewatch@node.example\"\nto = [\"ops@example.com\"]\n\
             [watch]\nmin-gap = \"0s\"\nmax-per-hour = 100000\nretry-min = \"200ms\"\nretry-max = \"1s\"\n\
             spool-min-free = \"1 MiB\"\n",
            spool_dir.display(),
            smtp.port
        ),
    )
    .unwrap();
    let spawn = |role: &str, conf: &Path, crash: Option<&str>, log: &Path| -> Reaped {
        let mut c = Command::new(bin());
        c.args(["--config"]).arg(conf).arg(role).stdout(std::fs::File::create(log).unwrap()).stderr(Stdio::null());
        if let Some(step) = crash {
            c.env("EW_TEST_CRASH_AT", step);
        }
        Reaped(c.spawn().unwrap())
    };
    let mut watchdog = spawn("watch", &watch_conf, None, &dir.path().join("watchdog.log"));

    let seed = 0x5eed_2026_1207u64;
    let mut rng = Rng(seed);
    let steps = ["after-decision", "after-event-write", "mid-encode", "after-clip-rename"];
    let mut kills = 0;
    let started = Instant::now();
    // At least 34 kills, and on until 50 events have been alerted (counted at the server: on a
    // loaded machine each round decides fewer).
    let snapshots = || mails(&smtp).iter().filter(|m| m.kind == "snapshot").count();
    for round in 0.. {
        if round >= 34 && snapshots() >= 50 {
            break;
        }
        if round >= 200 {
            let tail = |f: &str| {
                let t = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
                t.lines().rev().take(15).collect::<Vec<_>>().join("\n")
            };
            panic!(
                "only {} events alerted after 200 rounds; watchdog log (last lines, newest first):\n{}\nlast round:\n{}",
                snapshots(),
                tail("watchdog.log"),
                tail("detector-199.log")
            );
        }
        let log = dir.path().join(format!("detector-{round}.log"));
        let step = steps.get(round / 2).copied().filter(|_| round < 2 * steps.len());
        let mut child = spawn("detect", &detector_conf, step, &log);
        let status = match step {
            // The process kills itself at that step of its first event.
            Some(_) => wait_until(Duration::from_secs(60), "the crash point", || child.try_wait().unwrap()),
            // Random moments counted from the first frame, not from the spawn: on a loaded
            // machine the model's load alone can take longer than the longest delay.
            None => {
                wait_until(Duration::from_secs(60), "the file source to open", || {
                    std::fs::read_to_string(&log).unwrap_or_default().contains("file source opened").then_some(())
                });
                std::thread::sleep(rng.between(Duration::from_millis(300), Duration::from_millis(2500)));
                let _ = child.kill();
                child.wait().unwrap()
            }
        };
        assert_eq!(status.signal(), Some(9), "round {round} ({step:?}): killed by SIGKILL; log {}", log.display());
        kills += 1;
    }
    // A last run to the end of a short video (the base one, not the 40 repeats the rounds
    // start into): it closes what the kills left open, then exits.
    let last_conf = dir.path().join("detector-last.toml");
    let text = std::fs::read_to_string(&detector_conf).unwrap();
    let short = text.replace(&format!("path = \"{}\"", video.display()), &format!("path = \"{}\"", base.display()));
    assert_ne!(short, text, "the last run's config names the short video");
    std::fs::write(&last_conf, short).unwrap();
    let mut last = spawn("detect", &last_conf, None, &dir.path().join("detector-last.log"));
    let status =
        wait_until(Duration::from_secs(300), "the last run to the end of the video", || last.try_wait().unwrap());
    assert!(status.success(), "last run: {status}");
    let sp = spool_dir.clone();
    wait_until(Duration::from_secs(120), "every event delivered, archived and deleted", || {
        spool::events(&sp).unwrap().is_empty().then_some(())
    });
    let _ = Command::new("kill").args(["-TERM", &watchdog.id().to_string()]).status();
    let _ = watchdog.wait();

    // The events on record: every closed event's sidecar in the archive (nothing is left open
    // in the spool, checked above).
    let sidecars: BTreeMap<String, Sidecar> = s3
        .objects("clips")
        .into_iter()
        .filter(|(k, _)| k.ends_with(".json"))
        .map(|(_, b)| serde_json::from_slice::<Sidecar>(&b).unwrap())
        .map(|s| (s.event_id.clone(), s))
        .collect();
    let objects: BTreeMap<String, Vec<u8>> = s3.objects("clips").into_iter().collect();
    let m = mails(&smtp);
    let (mut recovered, mut unavailable, mut duplicates) = (0, 0, 0);
    // Frames of recovered clips, and of clips written whole (what a recovered one would have had).
    let (mut fractions, mut whole) = (Vec::new(), Vec::new());
    for (id, s) in &sidecars {
        let firsts: Vec<&Mail> = m.iter().filter(|x| &x.event == id && x.kind == "snapshot").collect();
        let follows: Vec<&Mail> = m.iter().filter(|x| &x.event == id && x.kind != "snapshot").collect();
        duplicates += firsts.len().saturating_sub(1) + follows.len().saturating_sub(1);
        assert_eq!(firsts.len(), 1, "{id}: first alerts");
        assert_eq!(follows.len(), 1, "{id}: follow-ups");
        assert_eq!(follows[0].in_reply_to, firsts[0].message_id, "{id}: threaded");
        match &s.clip_missing {
            None => {
                assert_eq!(follows[0].kind, "clip", "{id}");
                let key = format!("kill/kill/{}/{id}.mp4", s.event_time.format("%Y-%m-%d"));
                let clip = objects.get(&key).unwrap_or_else(|| panic!("{key} archived"));
                assert_eq!(edgewatch::model::sha256_hex(clip), s.clip_sha256, "{id}");
                if s.recovered {
                    recovered += 1;
                    fractions.push(s.frames as f64);
                } else {
                    whole.push(s.frames as f64);
                }
            }
            Some(why) => {
                assert_eq!(follows[0].kind, "no-clip", "{id}");
                assert!(why.contains("restarted"), "{id}: {why}");
                unavailable += 1;
            }
        }
    }
    let stray: Vec<&Mail> = m.iter().filter(|x| !sidecars.contains_key(&x.event)).collect();
    assert!(stray.is_empty(), "messages for events not on record: {stray:#?}");
    assert!(kills >= 30 && sidecars.len() >= 50, "{kills} kills, {} events", sidecars.len());
    assert!(recovered >= 1, "a kill at mid-encode or after the clip's rename leaves frames to recover");
    let firsts = m.iter().filter(|x| x.kind == "snapshot").count();
    whole.sort_by(f64::total_cmp);
    let full = whole[whole.len() / 2];
    let mut fractions: Vec<f64> = fractions.into_iter().map(|f| f / full).collect();
    fractions.sort_by(f64::total_cmp);
    println!(
        "sigkill (seed {seed:#x}, {:.0} s): {kills} kills; {} events decided and on record; {firsts} first alerts; {} follow-ups \
         ({} with the clip, of which {recovered} recovered from the frame journal; {unavailable} \"clip unavailable\"); {duplicates} duplicates",
        started.elapsed().as_secs_f64(),
        sidecars.len(),
        m.len() - firsts,
        sidecars.len() - unavailable,
    );
    if !fractions.is_empty() {
        println!(
            "recovered clips kept {:.0}% of the frames of a whole clip ({full} frames, the median of the clips written whole; min {:.0}%, max {:.0}%)",
            100.0 * fractions[fractions.len() / 2],
            100.0 * fractions[0],
            100.0 * fractions[fractions.len() - 1]
        );
    }
}

/// The reserve is what lets an event be recorded on a full spool: with the spool filled to the
/// last block, the next decision's record and still are written (the reserve given back for
/// them) and its first alert goes out; once space frees, the clip follows and the reserve is set
/// aside again. With `clip.reserve = 0` there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserve_lets_an_event_be_recorded_on_a_full_spool() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // Room for a 10 s clip (about 1.9 MB at 1500 kbit/s) and then some.
    let _tmpfs = Tmpfs::mount(&spool_dir, 4 << 20);
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.source.path = Some(video.clone());
    cfg.source.pace = Pace::Realtime;
    cfg.clip.spool_dir = spool_dir.clone();
    cfg.clip.min_free_space = bytesize::ByteSize::kib(16);
    cfg.clip.reserve = bytesize::ByteSize::kib(256);
    cfg.archive.target = dir.path().join("archive").display().to_string();
    cfg.watch.spool_min_free = bytesize::ByteSize::kib(1);
    let shutdown = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let detector = edgewatch::detector::start(cfg.clone(), shutdown.clone()).await.unwrap();
    let reserve = spool_dir.join(".reserve");
    // Set aside at start; then the rest of the spool is filled to the last block.
    let (r, s) = (reserve.clone(), spool_dir.clone());
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(30), "the reserve set aside", || r.exists().then_some(()));
        fill_up(&s.join("filler"));
    })
    .await
    .unwrap();
    assert!(edgewatch::spool::free_space(&spool_dir).unwrap() < 64 * 1024, "full");
    server.wait_for(1, "the first alert, on a full spool").await;
    assert!(!reserve.exists(), "given back for the record");
    let m = mails(&server);
    assert_eq!(m[0].kind, "snapshot");
    // Space frees: the clip follows, and the reserve is set aside again.
    std::fs::remove_file(spool_dir.join("filler")).unwrap();
    let summary = detector.wait().await.unwrap();
    assert_eq!(summary.events.len(), 1, "{summary:#?}");
    server.wait_for(2, "the clip").await;
    // Delivered and deleted, the spool has room again: the reserve is set aside (within one
    // of the writer's 5 s retries).
    let r = reserve.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), "the reserve set aside again", || r.exists().then_some(()))
    })
    .await
    .unwrap();
    shutdown.cancel();
    watchdog.wait().await.unwrap();

    // No reserve asked for, none made.
    let other = dir.path().join("spool0");
    let mut cfg0 = crate::common::test_config(
        dir.path(),
        &fixture_video(&["--size", "320x240", "--calm", "2", "--burst", "0.2", "--after", "1"]).0,
    );
    cfg0.clip.spool_dir = other.clone();
    cfg0.clip.reserve = bytesize::ByteSize::b(0);
    edgewatch::detector::run(cfg0, CancellationToken::new()).await.unwrap();
    assert!(other.is_dir() && !other.join(".reserve").exists());
}

/// An event decided on a spool too full even for its record (no reserve), then a stop before
/// space frees: the record was only in memory, so the next start knew nothing of the event and
/// removed its journalled frames. Now the record is kept in the frame journal too, and the next
/// start writes it and closes the event from the journal: the alert reaches the SMTP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_record_never_reached_the_spool_survives_a_restart() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool_dir, 8 << 20);
    let journal = dir.path().join("journal");
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.source.path = Some(video.clone());
    cfg.source.pace = Pace::Realtime;
    cfg.clip.spool_dir = spool_dir.clone();
    cfg.clip.reserve = bytesize::ByteSize::b(0);
    cfg.clip.min_free_space = bytesize::ByteSize::kib(16);
    cfg.clip.frame_journal = Some(journal.clone());
    cfg.archive.target = String::new();

    // The first run: the spool filled to the last block before the burst is decided.
    let stop = CancellationToken::new();
    let detector = edgewatch::detector::start(cfg.clone(), stop.clone()).await.unwrap();
    let filler = spool_dir.join("filler");
    tokio::task::spawn_blocking(move || fill_up(&filler)).await.unwrap();
    let held_record = || {
        std::fs::read_dir(&journal)
            .ok()?
            .flatten()
            .find_map(|e| e.file_name().to_string_lossy().strip_suffix(".record.json").map(str::to_string))
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut held = None;
    while held.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = held_record();
    }
    // Stopped either way: a detector left running on a full spool would hold the test forever.
    stop.cancel();
    detector.wait().await.unwrap();
    let held = held.expect("a decided event's record held in the journal");
    assert!(spool::events(&spool_dir).unwrap().is_empty(), "the spool took nothing");

    // Space frees; the next start (any source: the same video here) and the watchdog.
    std::fs::remove_file(spool_dir.join("filler")).unwrap();
    cfg.source.pace = Pace::Fast;
    let stop = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    edgewatch::detector::run(cfg.clone(), CancellationToken::new()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let reached = || server.messages().iter().any(|(raw, _)| header(raw, "X-Edgewatch-Event") == held);
    while !reached() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !reached() {
        stop.cancel();
        watchdog.wait().await.unwrap();
        panic!("the held event {held} never reached the SMTP server");
    }
    wait_spool_empty(&spool_dir, Duration::from_secs(60), "everything delivered").await;
    let m = mails(&server);
    let ours: Vec<&Mail> = m.iter().filter(|m| m.event == held).collect();
    assert!(
        ours.iter().any(|m| m.kind == "clip" || m.kind == "no-clip"),
        "{:?}",
        ours.iter().map(|m| &m.kind).collect::<Vec<_>>()
    );
    assert!(!journal.join(format!("{held}.record.json")).exists(), "released once written");
    stop.cancel();
    watchdog.wait().await.unwrap();
}

/// A clip the spool refuses for another reason than space (here an I/O error, from the
/// fault-injection build's failing step) is tried three times, then its event is closed as
/// "clip unavailable: it could not be written (...)", and the watchdog mails that reason.
#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_that_cannot_be_written_closes_its_event_with_the_reason() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cfg) = plain_smtp(dir.path(), &[]);
    cfg.archive.target = dir.path().join("archive").display().to_string();
    let conf = dir.path().join("detector.toml");
    std::fs::write(
        &conf,
        file_detector_toml("eio", &video, &dir.path().join("cache"), &cfg.clip.spool_dir)
            + &format!("[archive]\ntarget = \"{}\"\n", cfg.archive.target),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let watchdog = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    // The detector in its own process: the failing step is set in its environment only.
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .arg("detect")
        .env("EW_TEST_FAIL_AT", "clip-write")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("cannot write to the spool; held in memory and retried").count(), 1, "logged once: {log}");
    assert!(log.contains("giving up on the clip"), "{log}");
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "the event delivered and deleted").await;
    stop.cancel();
    watchdog.wait().await.unwrap();
    let m = mails(&server);
    let follow = m.iter().find(|x| x.kind == "no-clip").expect("the follow-up");
    let text = text_of(&follow.raw);
    assert!(text.contains("clip unavailable: it could not be written") && text.contains("os error 5"), "{text}");
    assert_eq!(m.len(), 2);
}
