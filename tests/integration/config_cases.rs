//! Every bad configuration in the table gives its expected message, through the library and
//! through `edgewatch check-config` (exit code 2, every problem listed).

use std::process::Command;

use edgewatch::config::{Config, Sources};

use crate::common::bin;

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

    // With the unknown keys fixed, the cross-field problem is reported.
    std::fs::write(&f, "[decision]\nk = 9\n").unwrap();
    let out = Command::new(bin()).arg("check-config").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`decision.k` = 9"));

    // A good file passes and --print redacts secrets.
    std::fs::write(&f, "camera = \"door\"\n[s3]\naccess-key-id = \"AKIASECRET\"\nsecret-access-key = \"hunter2\"\n")
        .unwrap();
    let out = Command::new(bin()).args(["check-config", "--print"]).arg(&f).output().unwrap();
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
