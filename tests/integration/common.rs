//! Shared helpers: fixture videos made with ffmpeg, a real S3-compatible server (s3s-fs, which
//! checks SigV4 signatures), ffprobe, and a tiny HTTP client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgewatch::config::{Config, LogFormat, Pace, SourceKind};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgewatch"))
}

/// The test model: seeded weights whose score follows the frames' brightness (model/README.md).
pub fn test_model() -> PathBuf {
    repo().join("model/test-brightness")
}

/// The shipped demo model, trained on synthetic clips (model/demo/TRAINING.md).
pub fn demo_model() -> PathBuf {
    repo().join("model/demo")
}

static FIXTURE_LOCK: Mutex<()> = Mutex::new(());

/// A fixture video made by tests/fixtures/make_video.sh, cached under target/ by its arguments.
/// Returns the path and the burst's (start, end) in seconds as the script printed them.
pub fn fixture_video(args: &[&str]) -> (PathBuf, f64, f64) {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("target/test-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let name = args.join("_").replace(['-', ' '], "");
    let path = dir.join(format!("video{name}.avi"));
    let meta = dir.join(format!("video{name}.txt"));
    if !path.exists() || !meta.exists() {
        let out = Command::new("bash")
            .arg(repo().join("tests/fixtures/make_video.sh"))
            .arg(&path)
            .args(args)
            .output()
            .expect("running make_video.sh (needs ffmpeg, ffprobe, python3)");
        assert!(
            out.status.success(),
            "make_video.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&meta, &out.stdout).unwrap();
    }
    let text = std::fs::read_to_string(&meta).unwrap();
    // The script prints "burst: start 12 s (frame 180), end 16 s (frame 240, exclusive)".
    let line =
        text.lines().find(|l| l.starts_with("burst: start")).unwrap_or_else(|| panic!("no burst line in:\n{text}"));
    let after = |key: &str| -> f64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("no `{key}` in {line}")) + key.len()..];
        rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad `{key}` in {line}"))
    };
    (path, after("start "), after("end "))
}

/// A config for tests: a fast file source, the test model, everything under `dir`, port 0.
pub fn test_config(dir: &Path, video: &Path) -> Config {
    let mut c = Config { node: "test-node".into(), camera: "cam0".into(), ..Config::default() };
    c.log.format = LogFormat::Human;
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.source.kind = SourceKind::File;
    c.source.path = Some(video.to_path_buf());
    c.source.pace = Pace::Fast;
    c.model.source = test_model().display().to_string();
    c.model.cache_dir = dir.join("model-cache");
    c.clip.spool_dir = dir.join("spool");
    c.clip.min_free_space = bytesize::ByteSize::mib(1);
    c.archive.retry_min = Duration::from_millis(200);
    c.archive.retry_max = Duration::from_secs(1);
    c.s3.timeout = Duration::from_secs(5);
    c.s3.connect_timeout = Duration::from_secs(2);
    c.s3.read_timeout = Duration::from_secs(5);
    c
}

/// The text of a detector config file for a subprocess: `node`, metrics on a free port, a fast
/// file source, the test model with its cache, the spool (1 MiB minimum free). Callers append
/// their own sections.
pub fn file_detector_toml(node: &str, video: &Path, cache: &Path, spool: &Path) -> String {
    format!(
        "node = \"{node}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[source]\nkind = \"file\"\npath = \"{}\"\npace = \"fast\"\n\
         [model]\nsource = \"{}\"\ncache-dir = \"{}\"\n[clip]\nspool-dir = \"{}\"\nmin-free-space = \"1 MiB\"\n",
        video.display(),
        test_model().display(),
        cache.display(),
        spool.display()
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn init_logs() {
    // EDGEWATCH_TEST_LOG overrides the filter, e.g. `edgewatch::detector=trace` for every score.
    let level = std::env::var("EDGEWATCH_TEST_LOG");
    let level = level.as_deref().unwrap_or("info,aws_config=warn,aws_smithy_runtime=warn");
    edgewatch::telemetry::init_logging(LogFormat::Human, level, Vec::new());
}

pub const ACCESS_KEY: &str = "edgewatch-test";
pub const SECRET_KEY: &str = "edgewatch-test-secret-key";

/// A real s3s-fs server on loopback. Install: `cargo install s3s-fs@0.14.1 --features binary`.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
}

fn s3s_fs_bin() -> PathBuf {
    if let Ok(p) = std::env::var("S3S_FS_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let p = home.join("bin/s3s-fs");
    assert!(
        p.exists(),
        "s3s-fs not found at {} (install it: cargo install s3s-fs@0.14.1 --features binary --locked)",
        p.display()
    );
    p
}

impl S3Server {
    /// Reserves a port without starting the server (to test "server down, then up").
    pub fn new(root: &Path) -> S3Server {
        std::fs::create_dir_all(root).unwrap();
        S3Server { child: None, port: free_port(), root: root.to_path_buf() }
    }

    pub fn start(root: &Path) -> S3Server {
        let mut s = S3Server::new(root);
        s.up();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        // The server's own request log (s3s logs each request at debug): what reached it is
        // counted there, not from edgewatch's side.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(s3s_fs_bin())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .env("RUST_LOG", "s3s::service=debug")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.root.with_extension("requests.log")
    }

    /// The requests the server received, as (method, path), oldest first, over every start.
    pub fn requests(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let rest = &l[l.find("req: Request { method: ")? + "req: Request { method: ".len()..];
                let (method, rest) = rest.split_once(", uri: ")?;
                let uri = rest.split(", version").next()?;
                Some((method.to_string(), uri.split('?').next().unwrap_or(uri).to_string()))
            })
            .collect()
    }

    /// How many PUTs reached the server for `bucket/key`.
    pub fn puts(&self, bucket: &str, key: &str) -> usize {
        let path = format!("/{bucket}/{key}");
        self.requests().iter().filter(|(m, p)| m == "PUT" && *p == path).count()
    }

    /// Points a config at this server with the right credentials.
    pub fn configure(&self, c: &mut Config) {
        c.s3.endpoint = self.endpoint();
        c.s3.region = "us-east-1".into();
        c.s3.force_path_style = true;
        c.s3.access_key_id = Some(edgewatch::config::Secret::new(ACCESS_KEY));
        c.s3.secret_access_key = Some(edgewatch::config::Secret::new(SECRET_KEY));
    }

    pub fn mkbucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// Files of a bucket as stored by s3s-fs (relative key → bytes), ignoring its metadata files.
    pub fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        let base = self.root.join(bucket);
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(&base).unwrap().to_string_lossy().into_owned();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.down();
    }
}

/// `edgewatch detect --config conf` as a child with `env` added (stdout discarded, killed when
/// dropped), once its HTTP listener on `port` answers; with that listener's address.
pub fn detect_child(conf: &Path, port: u16, env: &[(&str, &std::ffi::OsStr)]) -> (Reaped, SocketAddr) {
    let child = Reaped(
        Command::new(bin())
            .arg("--config")
            .arg(conf)
            .arg("detect")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, Duration::from_secs(20));
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on port {port} after {timeout:?}");
}

/// Minimal HTTP/1.0 GET (the tests only need status and body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) = http_get_bytes(&addr.to_string(), path);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the sample `name` (with its labels, if any) in a /metrics body, or `None`.
pub fn sample_opt(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).and_then(|v| v.parse().ok())
}

/// The value of the sample `name` (with its labels, if any) in a /metrics body. A missing
/// sample fails the test, naming what is there: a misspelt name or label must not read as 0
/// (every label value the roles use exists from the start, at 0).
pub fn sample(body: &str, name: &str) -> f64 {
    sample_opt(body, name).unwrap_or_else(|| {
        let family = name.split('{').next().unwrap_or(name);
        let near: Vec<&str> = body.lines().filter(|l| !l.starts_with('#') && l.contains(family)).collect();
        panic!("no sample `{name}` in /metrics; samples of `{family}`: {near:?}")
    })
}

/// One sample scraped from a running role's /metrics (it must be there: see [`sample`]).
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    sample(&http_get(addr, "/metrics").1, name)
}

/// The same for binary bodies, with the Host header given as it appears in a URL.
pub fn http_get_bytes(host: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]);
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf[split..].to_vec())
}

/// ffprobe's view of a media file as JSON.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams", "-count_frames"])
        .arg(path)
        .output()
        .expect("running ffprobe (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `promtool check metrics` on an exposition; returns its complaints (empty when clean).
pub fn promtool_check_metrics(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (apt-get install prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && s.trim().is_empty() {
        s = format!("promtool exited with {}", out.status);
    }
    s
}

/// Waits until `f` returns Some, polling; panics with `what` on timeout.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `base` played `times` times back to back (ffmpeg's stream loop, frames copied): one burst,
/// and so one event, per copy. Cached beside the fixture.
pub fn repeated_video(base: &Path, times: usize) -> PathBuf {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = base.with_file_name(format!("{}-x{times}.avi", base.file_stem().unwrap().to_string_lossy()));
    if !out.exists() {
        let tmp = out.with_extension("tmp.avi");
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-stream_loop", &(times - 1).to_string(), "-i"])
            .arg(base)
            .args(["-c", "copy", "-f", "avi"])
            .arg(&tmp)
            .status()
            .expect("running ffmpeg");
        assert!(st.success(), "ffmpeg could not repeat {}", base.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// A tmpfs of `bytes` mounted on `dir` for the test's lifetime: a spool that really fills up.
/// Needs root (CI runs as root); fails loudly rather than skipping otherwise.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0755"), "edgewatch-test"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (this test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until its filesystem refuses more: blocks, then a last byte, so the spool holding
/// it is full to the last byte.
pub fn fill_up(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&[0u8; 1]);
}

/// A child process that is killed and reaped when the test ends, pass or fail. std's `Child`
/// is not: a failed assertion would leave an edgewatch running on (retrying writes into a
/// temporary directory already removed) long after the test binary exits.
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
