//! What the benchmarks share: the repo's SMTP test server and percentiles.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `sorted[p]`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// tests/fixtures/smtp_server.py (aiosmtpd) on a free loopback port, storing into `maildir`.
pub fn start_aiosmtpd(maildir: &Path) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let child = Command::new("/opt/edgewatch-test-venv/bin/python")
        .arg(root.join("tests/fixtures/smtp_server.py"))
        .args(["--port", &port.to_string(), "--maildir"])
        .arg(maildir)
        .stdout(Stdio::null())
        .spawn()
        .expect("aiosmtpd (scripts/deps.sh test)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}
