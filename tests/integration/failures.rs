//! Failures an operator can act on (issue 20): each fault against the real SMTP server (AUTH,
//! STARTTLS, certificates from the tests' own CA) or the S3-compatible server gives its exact
//! class, names the key or server, shows in a metric or an exit code, and loses nothing: once
//! the fault is fixed, the alert is delivered and the clip archived.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgewatch::config::SmtpTls;
use edgewatch::spool;
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::watchdog::{other_cert, put_clip, test_ca, wait_spool_empty, watch_config, SmtpServer, PASS, USER};

/// A watchdog binary on `conf`, its JSON log lines collected.
struct Proc {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    fn start(args: &[&str], conf: &Path, env: &[(&str, &Path)]) -> Proc {
        let mut c = Command::new(bin());
        c.arg("--config").arg(conf).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, log }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        wait_until(Duration::from_secs(30), "the process to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A watchdog config file for `server` with AUTH over STARTTLS, the password in a secret file.
fn watchdog_toml(dir: &Path, server: &SmtpServer, metrics: u16, extra_smtp: &str) -> PathBuf {
    let conf = dir.join("watchdog.toml");
    std::fs::write(
        &conf,
        format!(
            "node = \"ops\"\n[log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:{metrics}\"\n[clip]\nspool-dir = \"{}\"\n\
             [smtp]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nusername = \"{USER}\"\n\
             from = \"edgewatch@node.example\"\nto = [\"ops@example.com\"]\ntimeout = \"5s\"\n{extra_smtp}\
             [watch]\nretry-min = \"200ms\"\nretry-max = \"1s\"\nspool-min-free = \"1 MiB\"\n",
            dir.join("spool").display(),
            server.port
        ),
    )
    .unwrap();
    conf
}

/// A wrong SMTP password is a configuration error, not the recipient's verdict: the event stays
/// queued (never `failed/`), `/readyz` says why with the server's code, one error line per change
/// of state (not per retry), `smtp_errors_total{class="auth"}`; once the password is fixed and the
/// watchdog restarted, the alert goes out.
#[test]
fn a_wrong_smtp_password_keeps_the_alert_queued_until_it_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), &["--mode", "starttls", "--auth", &format!("{USER}:{PASS}")]);
    let port = free_port();
    let conf = watchdog_toml(dir.path(), &server, port, &format!("ca-file = \"{}\"\n", test_ca().display()));
    let secret = dir.path().join("smtp-password");
    std::fs::write(&secret, "not-the-password\n").unwrap();
    let id = "20260101T000001.000Z-cam0";
    put_clip(&dir.path().join("spool"), id, "cam0", false);
    let mut wd = Proc::start(&["watch"], &conf, &[("EDGEWATCH_SMTP__PASSWORD_FILE", &secret)]);
    wait_for_port(port, Duration::from_secs(20));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Several refusals: the positive signal that it kept trying and kept the alert.
    wait_until(Duration::from_secs(30), "three AUTH refusals", || {
        (metric(addr, "edgewatch_smtp_errors_total{class=\"auth\"}") >= 3.0).then_some(())
    });
    let (code, body) = http_get(addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("auth") && body.contains("535") && body.contains("localhost"), "{body}");
    assert_eq!(metric(addr, "edgewatch_alerts_failed_total"), 0.0);
    assert_eq!(spool::complete_clips(&dir.path().join("spool")).unwrap(), [id], "still queued");
    assert!(!dir.path().join("spool/failed").join(format!("{id}.json")).exists(), "never failed/");
    wd.stop();
    let refused: Vec<String> =
        wd.lines().into_iter().filter(|l| l.contains("refuses edgewatch's configuration")).collect();
    assert_eq!(refused.len(), 1, "one error line for the state, not one per retry: {refused:#?}");
    assert!(refused[0].contains("\"class\":\"auth\"") && refused[0].contains("535"), "{}", refused[0]);
    assert_eq!(server.messages().len(), 0);

    std::fs::write(&secret, format!("{PASS}\n")).unwrap();
    let mut wd = Proc::start(&["watch"], &conf, &[("EDGEWATCH_SMTP__PASSWORD_FILE", &secret)]);
    let sp = dir.path().join("spool");
    wait_until(Duration::from_secs(30), "delivery after the fix", || {
        spool::events(&sp).unwrap().is_empty().then_some(())
    });
    wd.stop();
    assert_eq!(server.messages().len(), 1, "the queued alert, once");
    // No archive is configured: the log says what happened, and only that.
    let lines = wd.lines();
    assert!(lines.iter().any(|l| l.contains("event delivered; deleted from the spool")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("archived")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(PASS)), "the password is never logged");
}

/// TLS failures are named as such, with the server's name, and are configuration errors too:
/// an untrusted certificate, one for another name, an expired one. Each, once fixed, delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_named_and_the_alert_goes_out_once_fixed() {
    init_logs();
    for (case, cert, trust, expect) in [
        ("untrusted", None, false, "not trusted; set smtp.ca-file"),
        ("wrong name", Some("wrongname"), true, "not valid for the name localhost"),
        ("expired", Some("expired"), true, "has expired"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut extra: Vec<String> = vec!["--mode".into(), "starttls".into()];
        if let Some(name) = cert {
            let (c, k) = other_cert(name);
            extra.extend(["--cert".into(), c.display().to_string(), "--key".into(), k.display().to_string()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut server = SmtpServer::start(dir.path(), &extra);
        let mut cfg = watch_config(dir.path());
        cfg.archive.target = String::new();
        server.configure(&mut cfg, SmtpTls::Starttls);
        cfg.smtp.username = None;
        cfg.smtp.password = None;
        if !trust {
            cfg.smtp.ca_file = None;
        }
        let id = "20260101T000002.000Z-cam0";
        put_clip(&cfg.clip.spool_dir, id, "cam0", false);
        let stop = CancellationToken::new();
        let wd = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
        let addr = wd.http_addr;
        let body = tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(30), "a TLS error", || {
                (metric(addr, "edgewatch_smtp_errors_total{class=\"tls\"}") >= 2.0).then(|| http_get(addr, "/readyz"))
            })
        })
        .await
        .unwrap();
        assert_eq!(body.0, 503, "{case}: {}", body.1);
        assert!(body.1.contains("TLS with localhost failed") && body.1.contains(expect), "{case}: {}", body.1);
        assert_eq!(metric(addr, "edgewatch_smtp_errors_total{class=\"network\"}"), 0.0, "{case}: not a network error");
        assert_eq!(spool::complete_clips(&cfg.clip.spool_dir).unwrap(), [id], "{case}: still queued");
        stop.cancel();
        wd.wait().await.unwrap();
        assert_eq!(server.messages().len(), 0);

        // The fix: trust the CA, or a server with a good certificate; then a restart.
        server.down();
        let mut server = SmtpServer::new(dir.path(), &["--mode", "starttls"]);
        server.port = cfg.smtp.port.unwrap();
        server.up();
        cfg.smtp.ca_file = Some(test_ca());
        let stop = CancellationToken::new();
        let wd = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
        wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery after the fix").await;
        let ready = {
            let a = wd.http_addr;
            tokio::task::spawn_blocking(move || http_get(a, "/readyz")).await.unwrap()
        };
        assert_eq!(ready.0, 200, "{case}: ready again: {}", ready.1);
        stop.cancel();
        wd.wait().await.unwrap();
        assert_eq!(server.messages().len(), 1, "{case}: delivered once");
    }
}

/// A recipient the server refuses for good ends in `failed/` with the server's code and text,
/// the recipient and the time; `edgewatch watch --retry-failed` puts it back, and the running
/// watchdog delivers it once the server accepts the recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_rejection_is_explained_and_can_be_retried() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mut cfg) = crate::watchdog::plain_smtp(dir.path(), &["--reject-rcpt", "ops@example.com"]);
    cfg.watch.permanent_attempts = 2;
    cfg.archive.target = String::new();
    let id = "20260101T000003.000Z-cam0";
    put_clip(&cfg.clip.spool_dir, id, "cam0", false);
    let stop = CancellationToken::new();
    let wd = edgewatch::watchdog::start(cfg.clone(), stop.clone()).await.unwrap();
    let reason_path = cfg.clip.spool_dir.join("failed").join(format!("{id}.reason"));
    let reason = {
        let p = reason_path.clone();
        tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(30), "the reason in failed/", || std::fs::read_to_string(&p).ok())
        })
        .await
        .unwrap()
    };
    for needle in ["recipient: ops@example.com", "email: clip email", "550", "mailbox unavailable", "time: 20"] {
        assert!(reason.contains(needle), "{needle} in:\n{reason}");
    }
    assert_eq!(metric(wd.http_addr, "edgewatch_smtp_errors_total{class=\"permanent\"}"), 2.0);

    // The recipient is fixed at the server; an operator puts the event back.
    let port = server.port;
    server.down();
    let mut server = SmtpServer::new(dir.path(), &[]);
    server.port = port;
    server.up();
    let conf = dir.path().join("retry.toml");
    std::fs::write(&conf, format!("[clip]\nspool-dir = \"{}\"\n", cfg.clip.spool_dir.display())).unwrap();
    let out = Command::new(bin()).arg("--config").arg(&conf).args(["watch", "--retry-failed", id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("put back 1 event(s) for another try: {id}")), "{text}");
    assert!(!reason_path.exists());
    wait_spool_empty(&cfg.clip.spool_dir, Duration::from_secs(30), "delivery after --retry-failed").await;
    stop.cancel();
    wd.wait().await.unwrap();
    assert_eq!(server.messages().len(), 1);
    // Nothing left to retry: said plainly.
    let out = Command::new(bin()).arg("--config").arg(&conf).args(["watch", "--retry-failed", id]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no event"), "{out:?}");
}

/// A TCP port that accepts connections and never answers: what a hung S3 endpoint looks like.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s); // kept open, never read
            if held.len() > 16 {
                break;
            }
        }
    });
    (port, h)
}

/// S3 faults have classes: a store that accepts and never answers times out within
/// `s3.read-timeout` and is warned about at once (not after minutes of silence), wrong keys are
/// `auth`, a closed port is `network`. The clip waits in the spool through all of them and is
/// archived by the next start once S3 works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_faults_have_classes_and_the_clip_is_archived_once_fixed() {
    init_logs();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    s3.mkbucket("clips");
    let (hole, _h) = black_hole();
    let closed = free_port();
    let mut archived_id = None;
    for (case, class) in [("black hole", "timeout"), ("wrong secret", "auth"), ("closed port", "network")] {
        let mut cfg = test_config(dir.path(), &video);
        cfg.archive.target = "s3://clips/faults".into();
        s3.configure(&mut cfg);
        cfg.s3.read_timeout = Duration::from_secs(1);
        cfg.s3.timeout = Duration::from_secs(3);
        match case {
            "black hole" => cfg.s3.endpoint = format!("http://127.0.0.1:{hole}"),
            "wrong secret" => cfg.s3.secret_access_key = Some(edgewatch::config::Secret::new("not-the-secret")),
            _ => cfg.s3.endpoint = format!("http://127.0.0.1:{closed}"),
        }
        let stop = CancellationToken::new();
        let det = edgewatch::detector::start(cfg.clone(), stop.clone()).await.unwrap();
        let addr = det.http_addr;
        let started = std::time::Instant::now();
        let name = format!("edgewatch_archive_errors_total{{class=\"{class}\"}}");
        tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(30), "the archive error", || (metric(addr, &name) >= 1.0).then_some(()))
        })
        .await
        .unwrap();
        if case == "black hole" {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "reported within the timeouts: {:?}",
                started.elapsed()
            );
        }
        assert_eq!(metric(addr, "edgewatch_uploads_total{result=\"ok\"}"), 0.0, "{case}");
        stop.cancel();
        let summary = det.wait().await.unwrap();
        assert!(summary.archived.is_empty(), "{case}");
        archived_id.get_or_insert_with(|| summary.events[0].event_id.clone());
    }
    // Fixed: the next start archives every clip that waited (the first run's, retried and
    // refused by each later run, which stopped at that refusal).
    let (calm, _, _) = fixture_video(&["--size", "320x240", "--calm", "3", "--burst", "0.2", "--after", "1"]);
    let mut cfg = test_config(dir.path(), &calm);
    cfg.archive.target = "s3://clips/faults".into();
    s3.configure(&mut cfg);
    let summary = edgewatch::detector::run(cfg.clone(), CancellationToken::new()).await.unwrap();
    let first = archived_id.unwrap();
    assert!(summary.archived.contains(&first), "{summary:#?}");
    for id in spool::complete_clips(&cfg.clip.spool_dir).unwrap() {
        assert!(spool::ClipPaths::new(&cfg.clip.spool_dir, &id).archived.exists(), "{id} archived");
    }
    let keys: Vec<String> = s3.objects("clips").into_iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k.ends_with(&format!("{first}.mp4"))), "{keys:?}");
}

/// At `log.level = "trace"` the AWS SDK and the HTTP stack log request headers; no line of the
/// detector's (S3 archive) or the watchdog's (SMTP AUTH) log holds the key id, the secret key
/// or the SMTP password, all three of which the test hands them.
#[test]
fn no_secret_reaches_the_logs_even_at_trace() {
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    s3.mkbucket("clips");
    let server = SmtpServer::start(dir.path(), &["--mode", "starttls", "--auth", &format!("{USER}:{PASS}")]);
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for (name, value) in [("access-key-id", ACCESS_KEY), ("secret-access-key", SECRET_KEY), ("smtp-password", PASS)] {
        std::fs::write(secrets.join(name), format!("{value}\n")).unwrap();
    }
    let spool_dir = dir.path().join("spool");
    let shared = format!(
        "node = \"trace\"\n[log]\nformat = \"json\"\nlevel = \"trace\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MiB\"\n[archive]\ntarget = \"s3://clips/trace\"\n\
         [s3]\nendpoint = \"{}\"\nforce-path-style = true\n",
        spool_dir.display(),
        s3.endpoint()
    );
    let det_conf = dir.path().join("detector.toml");
    std::fs::write(
        &det_conf,
        format!(
            "{shared}[source]\nkind = \"file\"\npath = \"{}\"\npace = \"fast\"\n[model]\nsource = \"{}\"\ncache-dir = \"{}\"\n",
            video.display(),
            test_model().display(),
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let wd_conf = dir.path().join("watchdog.toml");
    std::fs::write(
        &wd_conf,
        format!(
            "{shared}[smtp]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca-file = \"{}\"\nusername = \"{USER}\"\n\
             from = \"edgewatch@node.example\"\nto = [\"ops@example.com\"]\n[watch]\nmin-gap = \"0s\"\nspool-min-free = \"1 MiB\"\n",
            server.port,
            test_ca().display()
        ),
    )
    .unwrap();
    let ak = secrets.join("access-key-id");
    let sk = secrets.join("secret-access-key");
    let pw = secrets.join("smtp-password");
    let s3_env =
        [("EDGEWATCH_S3__ACCESS_KEY_ID_FILE", ak.as_path()), ("EDGEWATCH_S3__SECRET_ACCESS_KEY_FILE", sk.as_path())];
    let mut wd_env = s3_env.to_vec();
    wd_env.push(("EDGEWATCH_SMTP__PASSWORD_FILE", pw.as_path()));
    let mut wd = Proc::start(&["watch"], &wd_conf, &wd_env);
    let mut det = Proc::start(&["detect"], &det_conf, &s3_env);
    let status =
        wait_until(Duration::from_secs(120), "the detector to finish the video", || det.child.try_wait().unwrap());
    assert!(status.success(), "{:#?}", det.lines());
    wait_until(Duration::from_secs(60), "delivery and archive", || {
        spool::events(&spool_dir).unwrap().is_empty().then_some(())
    });
    wd.stop();
    assert_eq!(server.messages().len(), 2, "the first alert and the clip, over AUTH");
    assert!(!s3.objects("clips").is_empty(), "archived with the keys");
    let logs: Vec<String> = det.lines().into_iter().chain(wd.lines()).collect();
    // Trace reached the SDK and the HTTP stack (so the assertions below have something to bite on).
    assert!(logs.iter().any(|l| l.contains("aws_sigv4") || l.contains("aws_smithy")), "no SDK trace lines");
    assert!(logs.len() > 500, "{} lines", logs.len());
    for (name, secret) in [("access key id", ACCESS_KEY), ("secret key", SECRET_KEY), ("SMTP password", PASS)] {
        let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "the {name} is in {} log line(s), e.g. {}", leaks.len(), leaks[0]);
    }
    assert!(logs.iter().any(|l| l.contains("[redacted]")), "the SDK did log a credential, redacted");
    let _ = std::io::stdout().flush();
}

/// A video file cut short ends the run with a warning naming the file, where it ends and how
/// many frames were read, and a non-zero exit status, after closing the event it had started.
/// Logs piped to a file carry no colour codes, and OpenH264 prints nothing of its own.
#[test]
fn a_truncated_video_fails_the_run_and_logs_carry_no_terminal_codes() {
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(&video).unwrap();
    let cut = dir.path().join("cut.avi");
    std::fs::write(&cut, &data[..data.len() * 3 / 4]).unwrap();
    let conf = dir.path().join("detector.toml");
    std::fs::write(&conf, file_detector_toml("cut", &cut, &dir.path().join("cache"), &dir.path().join("spool")))
        .unwrap();
    let out = Command::new(bin()).arg("--config").arg(&conf).arg("detect").env_remove("NO_COLOR").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let warn = stdout.lines().find(|l| l.contains("cannot be read to its end")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(warn.contains(&cut.display().to_string()) && warn.contains("truncated or corrupt at byte"), "{warn}");
    assert!(stderr.contains("after ") && stderr.contains(" frames"), "{stderr}");
    assert!(!stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'), "no ANSI codes in a pipe");
    assert!(!stderr.contains("OpenH264") && !stdout.contains("[OpenH264]"), "{stderr}");
    // The event it had started was closed before the exit.
    assert_eq!(spool::complete_clips(&dir.path().join("spool")).unwrap().len(), 1, "{stdout}");
    // One cause per level: a missing model says "No such file" once.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&conf).unwrap().replace(&test_model().display().to_string(), "/nonexistent/model"),
    )
    .unwrap();
    let out = Command::new(bin()).arg("--config").arg(&bad).arg("detect").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
