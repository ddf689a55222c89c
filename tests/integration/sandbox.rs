//! Running edgewatch the way it runs in the field, here: bubblewrap gives the process a tmpfs
//! root made read-only, the host's /usr for the C library, the binary and each declared path
//! bound where the field has it (writable only where the field makes it so), and setpriv the
//! field's user and groups. A write anywhere else fails. Used by the pod-shaped run (pod.rs) and
//! the NixOS units' run (units.rs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::common::bin;

/// Serialises the tests that bind the shipped, fixed ports (9870, 9871).
pub static FIXED_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The shape of a sandbox.
pub struct Sandbox {
    /// (where the process sees it, the host path, read-only)
    pub binds: Vec<(String, PathBuf, bool)>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    /// Starts `argv` (its first word the binary's path inside, `/bin/edgewatch` bound to the
    /// test's build), logging to `log` (stdout) and `log.err` (stderr).
    pub fn spawn(mut self, argv: &[String], log: PathBuf, writable: Vec<PathBuf>) -> Run {
        self.binds.push(("/bin/edgewatch".into(), bin(), true));
        // What the binary needs of the host: name resolution and users.
        for etc in ["/etc/hosts", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/resolv.conf"] {
            if Path::new(etc).exists() && !self.binds.iter().any(|(d, _, _)| d == etc) {
                self.binds.push((etc.into(), etc.into(), true));
            }
        }
        let mut args: Vec<String> = [
            "--tmpfs",
            "/",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
        ]
        .map(String::from)
        .to_vec();
        // Parent directories as an image or a root filesystem has them (0755), before anything
        // is mounted below them.
        let mut dirs = BTreeSet::new();
        for (dest, _, _) in &self.binds {
            let mut p = Path::new(dest).parent();
            while let Some(d) = p.filter(|d| *d != Path::new("/")) {
                dirs.insert(d.to_path_buf());
                p = d.parent();
            }
        }
        for d in dirs {
            args.extend(["--perms".into(), "0755".into(), "--dir".into(), d.display().to_string()]);
        }
        for (dest, src, ro) in &self.binds {
            args.extend([
                if *ro { "--ro-bind" } else { "--bind" }.to_string(),
                src.display().to_string(),
                dest.clone(),
            ]);
        }
        args.extend(["--dev", "/dev", "--proc", "/proc", "--remount-ro", "/"].map(String::from));
        let groups = self.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",");
        args.extend([
            "--".into(),
            "/usr/bin/setpriv".into(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            format!("--groups={groups}"),
            "--".into(),
        ]);
        args.extend(argv.iter().cloned());
        let mut cmd = Command::new("bwrap");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(&args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        Run { child: cmd.spawn().expect("bwrap (scripts/deps.sh installs bubblewrap)"), log, writable }
    }
}

/// One container run under bubblewrap, its mounts mapped under `root`.
pub struct Run {
    pub child: Child,
    pub log: PathBuf,
    /// Host paths of the writable mounts.
    pub writable: Vec<PathBuf>,
}

impl Run {
    /// SIGTERM to edgewatch itself, as the kubelet sends it to the container's process; bwrap
    /// then exits with its status.
    pub fn terminate(&self) {
        let out = Command::new("pgrep").args(["-g", &self.child.id().to_string(), "-x", "edgewatch"]).output().unwrap();
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-TERM", pid]).status();
        }
    }

    /// A signal to the whole sandbox (bwrap, setpriv and edgewatch share a process group: the
    /// uid change clears the parent-death signal, so killing bwrap alone could leave edgewatch).
    fn signal(&self, sig: &str) {
        let group = format!("-{}", self.child.id());
        let _ =
            Command::new("kill").args([&format!("-{sig}"), "--", &group]).stderr(std::process::Stdio::null()).status();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

pub fn chown(p: &Path, uid: u32, gid: u32, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

impl Run {
    /// What the process wrote to stdout and stderr.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default()
    }
}
