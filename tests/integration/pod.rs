//! The pod as the kubelet runs it (issue 22). k3s/ is rendered with kustomize (the base and the
//! VM-test overlay) and each container of the DaemonSet is run as its manifest and image say:
//! the image's entrypoint (nix/lib/image-config.nix), the container's env (every `*_FILE`
//! variable pointing into a mounted Secret with the keys the server creates,
//! nix/lib/k8s-secrets.nix), its volume mounts at their paths, its user and groups, and a
//! read-only root. Mounts are mapped under a temporary root with bubblewrap: the root is a
//! tmpfs made read-only, with the host's /usr for the C library, so a write anywhere but a
//! declared writable volume fails. The probes are asked at the manifest's paths and ports.
//!
//! What differs from a node, and why: the camera is replaced by the file source (no camera
//! here); the S3 endpoint and the SMTP host are pointed at the test's servers by environment
//! variables (the only values overridden; the base has real hosts); k3s itself (cgroups,
//! networking, image layers) is not here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::common::*;
use crate::sandbox::{chown, files_under, Run, Sandbox};
use crate::watchdog::SmtpServer;

/// Renders `k3s/` (and, with `overlay`, tests/vm/overlay on top) as nix-checks.sh does.
fn render(overlay: bool) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let cp = |from: &Path, to: &Path| {
        assert!(Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap().success());
    };
    cp(&repo().join("k3s"), &dir.path().join("base"));
    let top = if overlay {
        cp(&repo().join("tests/vm/overlay"), &dir.path().join("overlay"));
        "overlay"
    } else {
        "base"
    };
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(dir.path().join(top))
        .output()
        .expect("kubectl (with kustomize)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(yaml_serde::Value::deserialize(doc).unwrap()).unwrap())
        .collect()
}

pub(crate) fn nix_eval(expr: &str) -> Value {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E", expr])
        .current_dir(repo())
        .output()
        .expect("nix-instantiate (scripts/deps.sh installs nix-bin)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// What one container's run needs, read from the manifests.
#[derive(Clone)]
struct Container {
    name: String,
    role: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// (mount path, volume, sub path, read-only)
    mounts: Vec<(String, Value, Option<String>, bool)>,
    port: u16,
    probes: Vec<(String, String)>,
}

fn containers(docs: &[Value], images: &Value) -> Vec<Container> {
    let ds = kind(docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let sc = &spec["securityContext"];
    assert_eq!(
        (sc["runAsUser"].as_u64(), sc["runAsGroup"].as_u64(), sc["fsGroup"].as_u64()),
        (Some(65532), Some(65532), Some(65532))
    );
    assert_eq!(sc["supplementalGroups"], serde_json::json!([26]), "the groups setpriv gives below");
    let volumes: BTreeMap<String, Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "the root is read-only, as run here");
            let image = c["image"].as_str().unwrap();
            let role = image.split('/').nth(1).and_then(|r| r.split(':').next()).unwrap().to_string();
            let cfg = &images[&role];
            assert_eq!(cfg["User"], "65532:65532");
            // The kubelet: `command` replaces the image's Entrypoint, `args` its Cmd.
            let mut argv = if c["command"].is_array() { strings(&c["command"]) } else { strings(&cfg["Entrypoint"]) };
            argv.extend(strings(&c["args"]));
            let mut env: Vec<(String, String)> = strings(&cfg["Env"])
                .iter()
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            for e in c["env"].as_array().into_iter().flatten() {
                let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                    (Value::String(v), _) => v.clone(),
                    (_, Value::String(f)) if f == "spec.nodeName" => "pod-node".to_string(),
                    other => panic!("env {e} not understood: {other:?}"),
                };
                env.push((e["name"].as_str().unwrap().to_string(), value));
            }
            let mounts = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let vol =
                        volumes.get(m["name"].as_str().unwrap()).unwrap_or_else(|| panic!("volume of {m}")).clone();
                    let path = m["mountPath"].as_str().unwrap().to_string();
                    (path, vol, m["subPath"].as_str().map(String::from), m["readOnly"].as_bool().unwrap_or(false))
                })
                .collect();
            let port = c["ports"][0]["containerPort"].as_u64().unwrap() as u16;
            let probes = ["startupProbe", "livenessProbe", "readinessProbe"]
                .iter()
                .filter(|p| !c[**p].is_null())
                .map(|p| {
                    let g = &c[*p]["httpGet"];
                    assert_eq!(c["ports"][0]["name"], g["port"], "{p} asks the container's own port");
                    (p.to_string(), g["path"].as_str().unwrap().to_string())
                })
                .collect();
            Container { name: c["name"].as_str().unwrap().to_string(), role, argv, env, mounts, port, probes }
        })
        .collect()
}

/// Runs `c` in a sandbox shaped like its container: a tmpfs root made read-only, the host's
/// /usr, each volume at its mount path (made under `root`), the image's model and binary, the
/// pod's user and groups, and exactly the container's environment plus `extra`.
fn start(
    c: &Container,
    docs: &[Value],
    root: &Path,
    secrets: &Value,
    extra: &[(&str, String)],
    extra_ro: &[(&str, &Path)],
) -> Run {
    let configmap = kind(docs, "ConfigMap");
    let mut writable = Vec::new();
    let mut binds: Vec<(String, PathBuf, bool)> = Vec::new(); // (destination, source, read-only)
    for (path, vol, sub, ro) in &c.mounts {
        // One host directory per volume: containers of a pod that mount a volume share it.
        let host = match sub {
            Some(key) => root.join(format!("vol-{}-{key}", vol["name"].as_str().unwrap())),
            None => root.join(format!("vol-{}", vol["name"].as_str().unwrap())),
        };
        if vol.get("configMap").is_some() {
            assert_eq!(
                vol["configMap"]["name"], configmap["metadata"]["name"],
                "the mounted ConfigMap is the rendered one"
            );
            let key = sub.as_deref().expect("a ConfigMap file is mounted by subPath");
            let data = configmap["data"][key].as_str().unwrap_or_else(|| panic!("the ConfigMap has no key {key}"));
            std::fs::write(&host, data).unwrap();
        } else if vol.get("secret").is_some() {
            let name = vol["secret"]["secretName"].as_str().unwrap();
            let keys =
                secrets[name]["files"].as_object().unwrap_or_else(|| panic!("the server makes no Secret {name}"));
            std::fs::create_dir_all(&host).unwrap();
            for key in keys.keys() {
                let value = match key.as_str() {
                    "access-key-id" => ACCESS_KEY,
                    "secret-access-key" => SECRET_KEY,
                    _ => crate::watchdog::PASS,
                };
                std::fs::write(host.join(key), value).unwrap();
                // defaultMode 0440, group fsGroup.
                chown(&host.join(key), 0, 65532, 0o440);
            }
        } else if vol["hostPath"]["type"] == "File" {
            // In place of /var/lib/edgewatch-test/clip.avi on the node: the demo video, whose
            // fight the shipped (demo) model detects.
            std::fs::copy(repo().join("demo/demo.avi"), &host).unwrap();
        } else if vol.get("hostPath").is_some() || vol.get("emptyDir").is_some() {
            std::fs::create_dir_all(&host).unwrap();
            chown(&host, 65532, 65532, 0o770);
            if !ro {
                writable.push(host.clone());
            }
        } else {
            panic!("volume kind not understood: {vol}");
        }
        binds.push((path.clone(), host, *ro));
    }
    // The image's model (nix/packages/model.nix: share/edgewatch/model/demo); its entrypoint,
    // /bin/edgewatch, is the sandbox's.
    binds.push(("/share/edgewatch/model/demo".into(), repo().join("model/demo"), true));
    for (dest, src) in extra_ro {
        binds.push((dest.to_string(), src.to_path_buf(), true));
    }
    // The pod's securityContext: runAsUser, runAsGroup, fsGroup and supplementalGroups.
    let env: Vec<(String, String)> =
        c.env.iter().cloned().chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone()))).collect();
    let sandbox = Sandbox { binds, uid: 65532, gid: 65532, groups: vec![65532, 26], env };
    sandbox.spawn(&c.argv, root.join(format!("{}.log", c.name)), writable)
}

/// Both renders, each container as the kubelet runs it: probes answer as the kubelet expects,
/// the alert reaches the SMTP server and the clip the bucket, nothing is written outside the
/// writable volumes, and the shipped TOML passes `check-config` in that same world.
#[test]
fn the_pod_runs_as_the_manifests_say() {
    let _ports = crate::sandbox::FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let images = nix_eval("import ./nix/lib/image-config.nix");
    let secrets = nix_eval("import ./nix/lib/k8s-secrets.nix { secretsDir = \"/var/lib/edgewatch/secrets\"; }");
    for overlay in [false, true] {
        let which = if overlay { "VM-test overlay" } else { "base" };
        let docs = render(overlay);
        let mut cs = containers(&docs, &images);
        assert_eq!(cs.iter().map(|c| c.role.as_str()).collect::<Vec<_>>(), ["detector", "watchdog"], "{which}");
        for (c, sub) in cs.iter().zip(["detect", "watch"]) {
            assert_eq!(c.argv, ["/bin/edgewatch", sub], "{which}: the image's entrypoint, no command in the manifest");
        }
        // Every *_FILE variable names a key of a mounted Secret that the server makes.
        for c in &cs {
            for (k, v) in c.env.iter().filter(|(k, _)| k.starts_with("EDGEWATCH_") && k.ends_with("_FILE")) {
                let (dir, key) = v.rsplit_once('/').unwrap();
                let (_, vol, _, _) = c
                    .mounts
                    .iter()
                    .find(|(p, ..)| p == dir)
                    .unwrap_or_else(|| panic!("{which}: {k}={v} is under no mount"));
                let name = vol["secret"]["secretName"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{k} points into a non-Secret volume"));
                assert!(secrets[name]["files"][key].is_string(), "{which}: the Secret {name} has no key {key} ({k})");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let s3 = S3Server::start(&root.join("s3"));
        s3.mkbucket("clips");
        let data = |key: &str| kind(&docs, "ConfigMap")["data"][key].as_str().unwrap().to_string();
        let archive = data("detector.toml").contains("target = \"s3://");
        // The values that point at this machine's servers instead of the site's, and the base's
        // camera replaced by the file source, mounted as the overlay mounts its video.
        let s3_env: Vec<(&str, String)> =
            vec![("EDGEWATCH_S3__ENDPOINT", s3.endpoint()), ("EDGEWATCH_S3__FORCE_PATH_STYLE", "true".into())];
        let (mut det_env, mut wd_env) = (s3_env.clone(), s3_env);
        let ca = crate::watchdog::test_ca();
        let smtp = if data("watchdog.toml").contains("starttls") {
            let user = "edgewatch-alerts";
            assert!(data("watchdog.toml").contains(&format!("username = \"{user}\"")), "{which}");
            let auth = format!("{user}:{}", crate::watchdog::PASS);
            let s = SmtpServer::start(root, &["--mode", "starttls", "--auth", &auth]);
            wd_env.extend([
                ("EDGEWATCH_SMTP__HOST", "localhost".into()),
                ("EDGEWATCH_SMTP__PORT", s.port.to_string()),
                ("EDGEWATCH_SMTP__CA_FILE", "/etc/edgewatch-test/ca.pem".into()),
            ]);
            s
        } else {
            let s = SmtpServer::start(root, &[]);
            wd_env.extend([("EDGEWATCH_SMTP__HOST", "127.0.0.1".into()), ("EDGEWATCH_SMTP__PORT", s.port.to_string())]);
            s
        };
        if !overlay {
            det_env.extend([
                ("EDGEWATCH_SOURCE__KIND", "file".into()),
                ("EDGEWATCH_SOURCE__PATH", "/test/clip.avi".into()),
            ]);
            let video = serde_json::json!({"name": "test-video", "hostPath": {"path": "/var/lib/edgewatch-test/clip.avi", "type": "File"}});
            cs[0].mounts.push(("/test/clip.avi".into(), video, None, true));
        }
        // The image carries a CA bundle (dockerTools.caCertificates) where its SSL_CERT_FILE
        // says; the AWS SDK refuses to start without one.
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        let extra_ro = [("/etc/edgewatch-test/ca.pem", ca.as_path()), ("/etc/ssl/certs/ca-bundle.crt", bundle)];
        let env_of = |c: &Container| if c.role == "detector" { det_env.clone() } else { wd_env.clone() };
        for c in &cs {
            assert!(
                std::net::TcpListener::bind(("0.0.0.0", c.port)).is_ok(),
                "{which}: port {} (the manifest's) is taken",
                c.port
            );
        }
        let mut runs: Vec<(Container, Run)> =
            cs.iter().map(|c| (c.clone(), start(c, &docs, root, &secrets, &env_of(c), &extra_ro))).collect();
        // The kubelet's view: every probe at the manifest's path and port answers 200, /readyz
        // only once the model is loaded and frames arrive (detector) or the role is up (watchdog).
        for (c, run) in &mut runs {
            let addr: SocketAddr = format!("127.0.0.1:{}", c.port).parse().unwrap();
            wait_until(Duration::from_secs(90), "the probes", || {
                if let Some(st) = run.child.try_wait().unwrap() {
                    panic!("{which}: {} exited ({st}): {}", c.name, run.output());
                }
                let up = std::net::TcpStream::connect(addr).is_ok();
                (up && c.probes.iter().all(|(_, path)| http_get(addr, path).0 == 200)).then_some(())
            });
            for (probe, path) in &c.probes {
                println!("{which}: {} {probe}: GET {path} on port {} answers 200", c.name, c.port);
            }
        }
        // The alert at the SMTP server (the first alert, then the clip), the clip in the bucket.
        let spool = root.join("vol-spool");
        let mailed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(Duration::from_secs(90), "the event mailed, archived and deleted", || {
                (smtp.messages().len() >= 2 && edgewatch::spool::events(&spool).unwrap().is_empty()).then_some(())
            })
        }));
        if mailed.is_err() {
            let logs: Vec<String> = runs.iter().map(|(c, r)| format!("--- {}:\n{}", c.name, r.output())).collect();
            panic!("{which}: no alert and archive; spool {:?}; logs:\n{}", files_under(&spool), logs.join("\n"));
        }
        let kinds: Vec<String> =
            smtp.messages().iter().map(|(raw, _)| crate::watchdog::header(raw, "X-Edgewatch-Alert")).collect();
        assert_eq!(kinds, ["snapshot", "clip"], "{which}");
        println!("{which}: watchdog -> SMTP: {kinds:?}");
        if archive {
            let keys: Vec<String> = s3.objects("clips").into_iter().map(|(k, _)| k).collect();
            let clip = keys.iter().find(|k| k.contains("/pod-node/") && k.ends_with(".mp4"));
            println!("{which}: detector -> S3: {}", clip.unwrap_or_else(|| panic!("{which}: no clip in {keys:?}")));
        }
        // SIGTERM, as the kubelet stops a pod: both exit cleanly.
        for (c, run) in &mut runs {
            run.terminate();
            let st = wait_until(Duration::from_secs(30), "exit on SIGTERM", || run.child.try_wait().unwrap());
            assert!(st.success(), "{which}: {} exited {st} on SIGTERM: {}", c.name, run.output());
        }
        // Nothing was written outside the writable volumes: the root is read-only, so such a
        // write would have failed, and been logged; the volumes hold what was written.
        for (c, run) in &runs {
            let out = run.output();
            assert!(
                !out.contains("Read-only file system") && !out.contains("os error 30"),
                "{which}: {}: {out}",
                c.name
            );
            assert!(!out.contains("\"level\":\"ERROR\""), "{which}: {} logged an error: {out}", c.name);
            let written: Vec<PathBuf> = run.writable.iter().flat_map(|w| files_under(w)).collect();
            println!(
                "{which}: {} left {} file(s) in its writable volumes and wrote nowhere else",
                c.name,
                written.len()
            );
        }
        // The same sandbox refuses a write outside the volumes, so the check above can fail.
        let touch =
            Container { name: "touch".into(), argv: vec!["/usr/bin/touch".into(), "/etc/x".into()], ..cs[1].clone() };
        let mut t = start(&touch, &docs, root, &secrets, &[], &[]);
        assert!(!t.child.wait().unwrap().success(), "{which}: a write to the root must fail");
        assert!(t.output().contains("Read-only file system"), "{which}: {}", t.output());
        // The shipped TOML against the world as mounted, as the pod's user: check-config.
        for c in &cs {
            let check = Container {
                name: format!("{}-check", c.name),
                argv: vec!["/bin/edgewatch".into(), "check-config".into(), "--role".into(), c.role.clone()],
                ..c.clone()
            };
            let mut run = start(&check, &docs, root, &secrets, &env_of(c), &extra_ro);
            let st = run.child.wait().unwrap();
            let out = run.output();
            assert!(st.success(), "{which}: check-config of the {} file in the pod: {out}", c.role);
            println!("{which}: check-config --role {} in the pod: {}", c.role, out.trim());
        }
    }
}
