//! Every bad configuration in the table gives its expected message, through the library and
//! through `edgewatch check-config` (exit code 2, every problem listed).

use std::process::Command;

use edgewatch::config::{Config, Sources};

use crate::common::*;

/// (TOML, environment, expected fragments of the error)
type Case = (&'static str, &'static [(&'static str, &'static str)], &'static [&'static str]);
const CASES: &[Case] = &[
    ("camra = \"x\"\n", &[], &["unknown key `camra` (from TOML file"]),
    ("[source]\nfsp = 15\n", &[], &["unknown key `source.fsp`"]),
    (
        "",
        &[("EDGEWATCH_CLIP__PRE_ROL", "5s")],
        &["unknown key `clip.pre-rol` (from environment variable `EDGEWATCH_CLIP__PRE_ROL`)"],
    ),
    ("[source]\nkind = \"usb\"\n", &[], &["`source.kind`", "usb"]),
    ("[source]\nkind = \"file\"\n", &[], &["`source.path` is required"]),
    ("[source]\nfps = 0\n", &[], &["`source.fps` = 0 is out of range"]),
    ("[clip]\npre-roll = \"five seconds\"\n", &[], &["`clip.pre-roll`"]),
    (
        "[clip]\npre-roll = \"8s\"\npost-roll = \"8s\"\nmax-length = \"10s\"\n",
        &[],
        &["`clip.max-length` (10s) must be at least"],
    ),
    ("[clip]\nmin-free-space = \"lots\"\n", &[], &["`clip.min-free-space`"]),
    ("[decision]\nk = 4\nn = 3\n", &[], &["`decision.k` = 4 and `decision.n` = 3"]),
    ("[decision]\nthreshold = 1.5\n", &[], &["`decision.threshold` = 1.5"]),
    ("[model]\nsource = \"s3://\"\n", &[], &["`model.source`", "no bucket name"]),
    ("[model]\nsource = \"https://example.com/m\"\n", &[], &["only s3:// URLs and local paths"]),
    ("[model]\nmanifest-sha256 = \"abc\"\n", &[], &["`model.manifest-sha256` must be 64 hex digits"]),
    ("[archive]\ntarget = \"ftp://x\"\n", &[], &["`archive.target`"]),
    ("[archive]\npart-size = \"1 MiB\"\n", &[], &["`archive.part-size` must be at least 5 MiB"]),
    ("[s3]\naccess-key-id = \"AKIA\"\n", &[], &["must be given together"]),
    ("[s3]\nendpoint = \"localhost:9000\"\n", &[], &["`s3.endpoint` = `localhost:9000` must start with http"]),
    ("[http]\nlisten = \"nowhere\"\n", &[], &["`http.listen`"]),
    ("node = \"a/b\"\n", &[], &["may contain only letters"]),
    (
        "",
        &[("EDGEWATCH_S3__SECRET_ACCESS_KEY_FILE", "/nonexistent/secret")],
        &["`EDGEWATCH_S3__SECRET_ACCESS_KEY_FILE` names /nonexistent/secret, which cannot be read"],
    ),
    ("[log]\nformat = \"xml\"\n", &[], &["`log.format`"]),
    // Every cross-field rule of Config::validate, each with its key and where the value came from.
    ("node = \" \"\n", &[], &["`node` is empty", "(from TOML file"]),
    ("[source]\nwidth = 0\n", &[], &["`source.width` and `source.height` must be positive", "(from TOML file"]),
    ("[source]\njpeg-quality = 0\n", &[], &["`source.jpeg-quality` = 0 is out of range", "(from TOML file"]),
    (
        "[source]\nreconnect-min = \"40s\"\n",
        &[],
        &["`source.reconnect-min` must be positive and at most `source.reconnect-max`", "(from TOML file"],
    ),
    (
        "",
        &[("EDGEWATCH_MODEL__THREADS", "64")],
        &["`model.threads` = 64 is out of range", "(from environment variable `EDGEWATCH_MODEL__THREADS`)"],
    ),
    ("[model]\nonnxruntime-library = \"\"\n", &[], &["`model.onnxruntime-library` is empty", "(from TOML file"]),
    ("[decision]\nn = 2000\nk = 3\n", &[], &["`decision.n` is larger than 1000"]),
    ("[clip]\npost-roll = \"0s\"\n", &[], &["`clip.post-roll` must be positive", "(from TOML file"]),
    ("[clip]\npre-roll = \"61s\"\nmax-length = \"2m\"\n", &[], &["`clip.pre-roll` over 60 s", "(from TOML file"]),
    ("[clip]\nmax-length = \"11m\"\n", &[], &["`clip.max-length` over 10 minutes", "(from TOML file"]),
    ("[clip]\nbitrate-kbps = 50\n", &[], &["`clip.bitrate-kbps` = 50 is out of range", "(from TOML file"]),
    ("[clip]\nspool-dir = \"\"\n", &[], &["`clip.spool-dir` is empty", "(from TOML file"]),
    ("[clip]\nreserve = \"100 MiB\"\n", &[], &["`clip.reserve` over 64 MiB", "(from TOML file"]),
    (
        "[clip]\nspool-dir = \"/s\"\nframe-journal = \"/s/frames\"\n",
        &[],
        &["`clip.frame-journal` must be a directory of its own", "(from TOML file"],
    ),
    (
        "[clip]\nspool-dir = \"/s\"\n[archive]\ntarget = \"/s\"\n",
        &[],
        &["`archive.target` must not be the spool directory", "(from TOML file"],
    ),
    (
        "[archive]\nmultipart-threshold = \"6 MiB\"\npart-size = \"8 MiB\"\n",
        &[],
        &["`archive.multipart-threshold` must be at least `archive.part-size`", "(from TOML file"],
    ),
    ("[archive]\nretry-min = \"10m\"\n", &[], &["`archive.retry-min` must be positive and at most", "(from TOML file"]),
    (
        "[archive]\ntarget = \"s3://b/p\"\n[s3]\nregion = \"\"\n",
        &[],
        &["`s3.region` is required when S3 is used", "(from TOML file"],
    ),
    (
        "[s3]\ntimeout = \"0s\"\n",
        &[],
        &["`s3.timeout`, `s3.connect-timeout` and `s3.read-timeout` must be positive", "(from TOML file"],
    ),
    ("[smtp]\nhost = \"localhost\"\n", &[], &["`smtp.host` is set but `smtp.to` has no recipient", "(from TOML file"]),
    (
        "[smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\nto = [\"a@example.com\"]\n",
        &[],
        &["`smtp.tls = \"none\"` to `mail.example.com` would send mail (and credentials) in clear"],
    ),
    (
        "[smtp]\nfrom = \"not an address\"\n",
        &[],
        &["`smtp.from` = `not an address` is not an email address", "(from TOML file"],
    ),
    ("[smtp]\nto = [\"a@example.com\", \"nope\"]\n", &[], &["`smtp.to` holds `nope`", "(from TOML file"]),
    ("[smtp]\ntimeout = \"0s\"\n", &[], &["`smtp.timeout` must be positive", "(from TOML file"]),
    ("[watch]\npoll-interval = \"0s\"\n", &[], &["`watch.poll-interval` must be positive", "(from TOML file"]),
    ("[watch]\nretry-min = \"1h\"\n", &[], &["`watch.retry-min` must be positive and at most", "(from TOML file"]),
    ("[watch]\npermanent-attempts = 0\n", &[], &["`watch.permanent-attempts` must be at least 1", "(from TOML file"]),
    ("[watch]\nmax-per-hour = 0\n", &[], &["`watch.max-per-hour` must be at least 1", "(from TOML file"]),
    ("[watch]\nrequire-archive = true\n", &[], &["`watch.require-archive = true` but `archive.target` is empty"]),
];

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("edgewatch.toml");
    std::fs::write(&f, toml).unwrap();
    Config::load(&Sources {
        file: Some(f),
        file_required: true,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    })
    .map_err(|e| e.to_string())
}

#[test]
fn every_bad_config_gives_its_message() {
    let mut failures = Vec::new();
    for (toml, env, expected) in CASES {
        match load(toml, env) {
            Ok(_) => failures.push(format!("accepted:\n{toml}{env:?}")),
            Err(msg) => {
                for e in *expected {
                    if !msg.contains(e) {
                        failures.push(format!("for\n{toml}{env:?}\nexpected `{e}` in:\n{msg}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "camra = 1\n[decision]\nk = 9\n[source]\nfsp = 2\n").unwrap();
    let out = Command::new(bin()).arg("check-config").arg(&f).env_remove("EDGEWATCH_CONFIG").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown key `camra`") && err.contains("unknown key `source.fsp`"), "{err}");

    // In the same run: a type error and the cross-field rule, beside the unknown keys.
    std::fs::write(&f, "camra = 1\n[decision]\nk = 9\n[source]\nfsp = 2\nfps = \"fast\"\n").unwrap();
    let out = Command::new(bin()).args(["check-config", "--file-only"]).arg(&f).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown key `camra`") && err.contains("unknown key `source.fsp`"), "{err}");
    assert!(err.contains("`source.fps`") && err.contains("fast"), "the type error too: {err}");
    assert!(err.contains("`decision.k` = 9") && err.contains("(from TOML file"), "and the cross-field rule: {err}");
    assert!(err.contains("4 problems"), "{err}");

    // A good file passes and --print redacts secrets.
    std::fs::write(&f, "camera = \"door\"\n[s3]\naccess-key-id = \"AKIASECRET\"\nsecret-access-key = \"hunter2\"\n")
        .unwrap();
    let out = Command::new(bin()).args(["check-config", "--file-only", "--print"]).arg(&f).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("camera = \"door\"") && text.contains("[redacted]"), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("AKIASECRET"), "{text}");

    // A named file that does not exist is an error, not silently the defaults.
    let out = Command::new(bin()).arg("check-config").arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn version_is_printed() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("edgewatch {}", env!("CARGO_PKG_VERSION")));
}

/// (TOML, environment, expected exit status, expected fragments of the output)
type WorldCase = (String, Vec<(&'static str, String)>, i32, Vec<String>);

/// `check-config` checks the world the file names, offline: each problem with its class, key
/// and origin, and the exit status of the first class (3 model, 4 source, 5 spool, 6 archive,
/// 7 SMTP); `--role` checks only what the role uses; a good world passes.
#[test]
fn check_config_checks_the_world_with_an_exit_status_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (video, _, _) = fixture_video(&["--size", "320x240", "--calm", "5", "--burst", "3", "--after", "7"]);
    // A corrupt copy of the test model: one byte of the backbone changed.
    let corrupt = d.join("corrupt-model");
    std::fs::create_dir_all(&corrupt).unwrap();
    for e in std::fs::read_dir(test_model()).unwrap().flatten() {
        std::fs::copy(e.path(), corrupt.join(e.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(corrupt.join("backbone.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(corrupt.join("backbone.onnx"), bytes).unwrap();
    let header_only = d.join("header.avi");
    std::fs::write(&header_only, &std::fs::read(&video).unwrap()[..64]).unwrap();
    let not_a_device = d.join("video0");
    std::fs::write(&not_a_device, b"").unwrap();
    let good = format!(
        "[source]\nkind = \"file\"\npath = \"{}\"\n[model]\nsource = \"{}\"\n[clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MiB\"\n\
         [archive]\ntarget = \"{}\"\n[smtp]\noutbox-dir = \"{}\"\n",
        video.display(),
        test_model().display(),
        d.join("spool").display(),
        d.join("archive").display(),
        d.join("outbox").display()
    );
    let run = |toml: &str, args: &[&str], env: &[(&str, &str)]| {
        let f = d.join("c.toml");
        std::fs::write(&f, toml).unwrap();
        let mut c = Command::new(bin());
        c.arg("check-config").args(args).arg(&f).env_remove("EDGEWATCH_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&good, &[], &[]);
    assert_eq!(code, Some(0), "the good world passes: {err}");
    // Without side effects: the directories it checked can be created, and were not.
    for never in ["spool", "archive", "outbox"] {
        assert!(!d.join(never).exists(), "check-config created {never}");
    }
    let model = test_model().display().to_string();
    let cases: Vec<WorldCase> = vec![
        (
            good.replace(&model, "/nonexistent/model"),
            vec![],
            3,
            vec!["[model] `model.source` (from TOML file".into(), "is not a directory".into()],
        ),
        (
            good.replace(&model, &corrupt.display().to_string()),
            vec![],
            3,
            vec!["`model.source`".into(), "sha256".into()],
        ),
        (
            good.replace(&video.display().to_string(), "/nonexistent/v.avi"),
            vec![],
            4,
            vec!["[source] `source.path`".into(), "cannot open".into()],
        ),
        (
            good.replace(&video.display().to_string(), &header_only.display().to_string()),
            vec![],
            4,
            vec!["`source.path`".into()],
        ),
        (
            good.clone(),
            vec![("EDGEWATCH_SOURCE__PATH", "/nope.avi".into())],
            4,
            vec!["(from environment variable `EDGEWATCH_SOURCE__PATH`)".into()],
        ),
        (
            good.replace("kind = \"file\"", "kind = \"v4l2\"") + "",
            vec![("EDGEWATCH_SOURCE__DEVICE", d.join("missing0").display().to_string())],
            4,
            vec!["`source.device`".into(), "No such file".into()],
        ),
        (
            good.replace("kind = \"file\"", "kind = \"v4l2\""),
            vec![("EDGEWATCH_SOURCE__DEVICE", not_a_device.display().to_string())],
            4,
            vec!["is not a device".into()],
        ),
        (
            good.replace(&d.join("spool").display().to_string(), &not_a_device.join("spool").display().to_string()),
            vec![],
            5,
            vec!["[spool] `clip.spool-dir`".into()],
        ),
        (
            good.replace("min-free-space = \"1 MiB\"", "min-free-space = \"100 PiB\""),
            vec![],
            5,
            vec!["`clip.min-free-space`".into(), "below".into()],
        ),
        (
            good.replace(&d.join("archive").display().to_string(), &not_a_device.join("a").display().to_string()),
            vec![],
            6,
            vec!["[archive] `archive.target`".into()],
        ),
        (
            good.clone() + "host = \"smtp.example.com\"\nusername = \"u\"\nto = [\"a@example.com\"]\n",
            vec![],
            7,
            vec!["[smtp] `smtp.password`".into(), "EDGEWATCH_SMTP__PASSWORD_FILE".into()],
        ),
        (
            good.clone() + "host = \"smtp.example.com\"\nca-file = \"/nonexistent/ca.pem\"\nto = [\"a@example.com\"]\n",
            vec![],
            7,
            vec!["`smtp.ca-file`".into()],
        ),
        (
            good.replace(
                "min-free-space = \"1 MiB\"",
                &format!("min-free-space = \"1 MiB\"\nframe-journal = \"{}\"", not_a_device.join("frames").display()),
            ),
            vec![],
            5,
            vec!["[spool] `clip.frame-journal`".into()],
        ),
        (
            good.replace(&d.join("outbox").display().to_string(), &not_a_device.join("outbox").display().to_string()),
            vec![],
            7,
            vec!["[smtp] `smtp.outbox-dir`".into()],
        ),
    ];
    let mut failures = Vec::new();
    for (toml, env, want_code, needles) in &cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, err) = run(toml, &[], &env);
        if code != Some(*want_code) || !needles.iter().all(|n| err.contains(n.as_str())) {
            failures.push(format!("want exit {want_code} and {needles:?}, got {code:?}:\n{err}\nfor\n{toml}{env:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    // Several classes at once: all listed, the exit status is the first's.
    let both = good
        .replace(&model, "/nonexistent/model")
        .replace("min-free-space = \"1 MiB\"", "min-free-space = \"100 PiB\"");
    let (code, err) = run(&both, &[], &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("2 problem(s)") && err.contains("[spool]"), "{err}");
    // The watchdog's file is not checked for a camera or a model; `--skip` leaves a class out.
    let (code, err) = run(&both, &["--role", "watchdog"], &[]);
    assert_eq!(code, Some(5), "{err}");
    let (code, err) = run(&both, &["--skip", "model,spool"], &[]);
    assert_eq!(code, Some(0), "{err}");
}

/// `--online` asks the servers: S3's HeadBucket for a bucket that is not there, and an SMTP
/// session whose AUTH the server refuses, each its own class; with both right, it passes.
#[test]
fn check_config_online_asks_s3_and_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    s3.mkbucket("clips");
    let smtp = crate::watchdog::SmtpServer::start(
        dir.path(),
        &["--mode", "starttls", "--auth", &format!("{}:{}", crate::watchdog::USER, crate::watchdog::PASS)],
    );
    let pw = dir.path().join("pw");
    let conf = |bucket: &str| {
        format!(
            "[clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MiB\"\n[archive]\ntarget = \"s3://{bucket}/x\"\n\
             [s3]\nendpoint = \"{}\"\nforce-path-style = true\naccess-key-id = \"{ACCESS_KEY}\"\nsecret-access-key = \"{SECRET_KEY}\"\n\
             [smtp]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca-file = \"{}\"\nusername = \"{}\"\nto = [\"a@example.com\"]\n",
            dir.path().join("spool").display(),
            s3.endpoint(),
            smtp.port,
            crate::watchdog::test_ca().display(),
            crate::watchdog::USER
        )
    };
    let run = |toml: String, password: &str| {
        std::fs::write(&pw, password).unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, toml).unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--role", "watchdog", "--online"])
            .arg(&f)
            .env("EDGEWATCH_SMTP__PASSWORD_FILE", &pw)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(conf("nobucket"), crate::watchdog::PASS);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("bucket nobucket at http://127.0.0.1"), "{err}");
    let (code, err) = run(conf("clips"), "wrong");
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("`smtp.password`") && err.contains("535") && err.contains("(auth)"), "{err}");
    assert!(!err.contains("wrong"), "the password is not echoed: {err}");
    let (code, err) = run(conf("clips"), crate::watchdog::PASS);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("servers answered"), "{err}");
    assert_eq!(smtp.messages().len(), 0, "nothing was sent");
}

/// The README's configuration tables give every key's default as the binary has it: each
/// literal default in a table is the value `check-config --print` shows for an empty file, and
/// every key of the printed configuration is in a table. The watchdog's table is checked
/// against `--role watchdog` (its port is 9871).
#[test]
fn the_documented_defaults_are_the_binarys() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let printed = |role: &str| -> toml::Table {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty.toml");
        std::fs::write(&f, "").unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--file-only", "--print", "--role", role])
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().parse().unwrap()
    };
    let (detector, watchdog) = (printed("detector"), printed("watchdog"));
    let value = |t: &toml::Table, key: &str| -> Option<String> {
        let mut cur = toml::Value::Table(t.clone());
        for part in key.split('.') {
            cur = cur.as_table()?.get(part)?.clone();
        }
        Some(match cur {
            toml::Value::String(s) => s,
            toml::Value::Array(a) if a.is_empty() => "[]".into(),
            other => other.to_string(),
        })
    };
    // Durations and sizes may be written differently (`5m` and `300s`, `64 MiB` and `64.0 MiB`).
    let same = |doc: &str, bin: &str| {
        let d = humantime::parse_duration(doc).ok().zip(humantime::parse_duration(bin).ok());
        let b = doc.parse::<bytesize::ByteSize>().ok().zip(bin.parse::<bytesize::ByteSize>().ok());
        doc == bin || d.is_some_and(|(x, y)| x == y) || b.is_some_and(|(x, y)| x == y)
    };
    let watchdog_at = readme.find("## The watchdog").expect("a watchdog section");
    let model_at = readme.find("## The model contract").expect("a model contract section");
    let mut documented = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    let mut at = 0;
    for line in readme.lines() {
        let here = at;
        at += line.len() + 1;
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        if cells.len() < 3 {
            continue;
        }
        let keys: Vec<&str> = cells[0].trim_start_matches("| ").split(", ").map(|k| k.trim_matches('`')).collect();
        let defaults: Vec<&str> = cells[1].split(", ").map(str::trim).collect();
        let table = if (watchdog_at..model_at).contains(&here) { &watchdog } else { &detector };
        for (i, key) in keys.iter().enumerate() {
            let Some(bin) = value(table, key) else { continue }; // not a configuration key
            documented.insert(key.to_string());
            let Some(doc) = defaults.get(i).filter(|d| d.starts_with('`') && d.ends_with('`')) else { continue };
            let doc = doc.trim_matches('`').trim_matches('"');
            if !same(doc, &bin) {
                wrong.push(format!("{key}: README says `{doc}`, the binary has `{bin}`"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The reverse: every key the binary has is in a table (optional keys, unset by default,
    // are not printed, so they are not asked for here).
    fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(inner) => keys(&path, inner, out),
                _ => out.push(path),
            }
        }
    }
    let mut all = Vec::new();
    keys("", &detector, &mut all);
    let missing: Vec<&String> = all.iter().filter(|k| !documented.contains(*k)).collect();
    assert!(missing.is_empty(), "keys the README's tables do not list: {missing:?}");
    assert_eq!(value(&watchdog, "http.listen").as_deref(), Some("0.0.0.0:9871"), "the watchdog's own port");
}
