//! The NixOS units as systemd runs them (`edgewatch.node.runtime = "systemd"`): each role's
//! settings as the module renders them (the user's, over what nix/lib/units.nix adds), its
//! TOML, and a sandbox of the unit's shape: a read-only root (ProtectSystem=strict), writable
//! only the spool (ReadWritePaths) and the directories systemd makes for it (StateDirectory,
//! CacheDirectory, RuntimeDirectory) and a private /tmp; a dynamic user in the `edgewatch`
//! group (and `video` for the detector); its credentials where LoadCredential puts them, named
//! by the `EDGEWATCH_*_FILE` variables the module sets. What differs from a node: the camera is
//! the file source (as in the VM test), and systemd itself is not here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::pod::nix_eval;
use crate::sandbox::{chown, files_under, Run, Sandbox};
use crate::watchdog::SmtpServer;

/// `over` laid over `under`, as the module system merges the user's settings over mkDefaults.
fn merge(under: &Value, over: &Value) -> Value {
    match (under, over) {
        (Value::Object(u), Value::Object(o)) => {
            let mut out = u.clone();
            for (k, v) in o {
                out.insert(k.clone(), merge(u.get(k).unwrap_or(&Value::Null), v));
            }
            Value::Object(out)
        }
        (_, o) => o.clone(),
    }
}

/// Each unit's dynamic user (DynamicUser gives every unit its own) and the static `edgewatch`
/// group they share the spool through (any free ids will do).
fn dynamic_uid(role: &str) -> u32 {
    if role == "detector" {
        61_234
    } else {
        61_235
    }
}
const EDGEWATCH_GID: u32 = 61_500;
const VIDEO_GID: u32 = 26;

#[test]
fn the_nixos_units_run_as_systemd_runs_them() {
    let _ports = crate::sandbox::FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let units = nix_eval("import ./nix/lib/units.nix");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let smtp = SmtpServer::start(root, &[]);
    // The spool as systemd-tmpfiles makes it: 2770 root:edgewatch.
    let spool_dir = units["spoolDir"].as_str().unwrap();
    let spool = root.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    chown(&spool, 0, EDGEWATCH_GID, 0o2770);
    let model = "/nix/store/00000000000000000000000000000000-edgewatch-model-demo/share/edgewatch/model/demo";
    let video = "/nix/store/00000000000000000000000000000000-test-video/clip.avi";
    // What a site sets (as tests/vm/broken-deploy-rollback.nix does), over the module's own.
    let user = |role: &str| -> Value {
        match role {
            "detector" => json!({
                "camera": "vm-cam",
                "log": {"format": "json"},
                "source": {"kind": "file", "path": video, "pace": "realtime"},
                "model": {"source": model},
                "archive": {"target": ""},
            }),
            _ => json!({
                "log": {"format": "json"},
                "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "to": ["ops@example.com"]},
                "archive": {"target": ""},
            }),
        }
    };
    let mut runs: Vec<(String, u16, Run)> = Vec::new();
    let mut shapes = Vec::new();
    for role in ["detector", "watchdog"] {
        let u = &units[role];
        let settings = merge(&u["settings"], &user(role));
        // pkgs.formats.toml: the settings as TOML.
        let toml = toml::to_string(&serde_json::from_value::<toml::Value>(settings.clone()).unwrap()).unwrap();
        let conf = root.join(format!("{role}.toml"));
        std::fs::write(&conf, &toml).unwrap();
        let unit = u["unit"].as_str().unwrap();
        let mut binds: Vec<(String, PathBuf, bool)> = vec![
            (format!("/etc/edgewatch/{unit}.toml"), conf.clone(), true),
            (spool_dir.into(), spool.clone(), false),
            (model.into(), repo().join("model/demo"), true),
            (video.into(), repo().join("demo/demo.avi"), true),
        ];
        let mut writable = vec![spool.clone()];
        let dirs = &u["directories"];
        for (key, base) in
            [("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache"), ("RuntimeDirectory", "/run")]
        {
            if let Some(name) = dirs[key].as_str() {
                let host = root.join(format!("{unit}-{key}"));
                std::fs::create_dir_all(&host).unwrap();
                chown(&host, dynamic_uid(role), dynamic_uid(role), 0o755);
                binds.push((format!("{base}/{name}"), host.clone(), false));
                writable.push(host);
            }
        }
        // PrivateTmp.
        let tmp = root.join(format!("{unit}-tmp"));
        std::fs::create_dir_all(&tmp).unwrap();
        chown(&tmp, 0, 0, 0o1777);
        binds.push(("/tmp".into(), tmp.clone(), false));
        writable.push(tmp);
        let uid = dynamic_uid(role);
        let mut groups = vec![uid, EDGEWATCH_GID];
        if role == "detector" {
            groups.push(VIDEO_GID); // SupplementaryGroups = [ "video" ]
        }
        let listen: SocketAddr = u["defaultListen"].as_str().unwrap().parse().unwrap();
        // UMask=0007, as the module sets, so that the two units' files stay group-readable.
        let argv: Vec<String> = ["/usr/bin/sh", "-c", "umask 0007 && exec \"$@\"", "sh", "/bin/edgewatch"]
            .into_iter()
            .map(String::from)
            .chain([u["subcommand"].as_str().unwrap().into(), "--config".into(), format!("/etc/edgewatch/{unit}.toml")])
            .collect();
        let shape = || Sandbox {
            binds: binds.clone(),
            uid,
            gid: uid,
            groups: groups.clone(),
            env: vec![("PATH".into(), "/usr/bin".into())],
        };
        assert!(std::net::TcpListener::bind(listen).is_ok(), "port {} (the default) is taken", listen.port());
        let run = shape().spawn(&argv, root.join(format!("{unit}.log")), writable.clone());
        shapes.push((role, unit.to_string(), shape(), argv.clone(), settings));
        runs.push((role.into(), listen.port(), run));
    }
    // Ready as the rollout's health gate asks (nixos/profiles/node.nix: readyzUrls).
    for (role, port, run) in &mut runs {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until(Duration::from_secs(90), "/readyz", || {
            if let Some(st) = run.child.try_wait().unwrap() {
                panic!("{role} exited ({st}): {}", run.output());
            }
            (std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/readyz").0 == 200).then_some(())
        });
        println!("units: edgewatch-{role}: /readyz on port {port} answers 200");
    }
    let sp = spool.clone();
    wait_until(Duration::from_secs(90), "the event mailed and deleted", || {
        (smtp.messages().len() >= 2 && edgewatch::spool::events(&sp).unwrap().is_empty()).then_some(())
    });
    let kinds: Vec<String> =
        smtp.messages().iter().map(|(raw, _)| crate::watchdog::header(raw, "X-Edgewatch-Alert")).collect();
    assert_eq!(kinds, ["snapshot", "clip"]);
    println!("units: watchdog -> SMTP: {kinds:?}");
    for (role, _, run) in &mut runs {
        run.terminate();
        let st = wait_until(Duration::from_secs(30), "exit on SIGTERM", || run.child.try_wait().unwrap());
        let out = run.output();
        assert!(st.success(), "{role} exited {st} on SIGTERM: {out}");
        assert!(!out.contains("Read-only file system") && !out.contains("os error 30"), "{role}: {out}");
        assert!(!out.contains("\"level\":\"ERROR\""), "{role} logged an error: {out}");
        let written: Vec<PathBuf> = run.writable.iter().flat_map(|w| files_under(w)).collect();
        println!("units: edgewatch-{role} left {} file(s) in its writable paths and wrote nowhere else", written.len());
    }
    // The frame journal is where the module put it: the unit's RuntimeDirectory.
    assert!(root.join("edgewatch-detector-RuntimeDirectory/frames").is_dir());
    // The TOML the module renders passes check-config in the unit's world, as its user.
    for (role, unit, shape, argv, settings) in shapes {
        let config = argv.last().unwrap().clone();
        let check = vec!["/bin/edgewatch".into(), "check-config".into(), "--role".into(), role.into(), config];
        let mut run = shape.spawn(&check, root.join(format!("{unit}-check.log")), Vec::new());
        let st = run.child.wait().unwrap();
        assert!(st.success(), "check-config of the {role} unit's TOML: {}\n{settings:#}", run.output());
        println!("units: check-config --role {role} in the unit's sandbox: {}", run.output().trim());
    }
}
