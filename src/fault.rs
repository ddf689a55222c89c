//! Test-only faults at named steps: a real SIGKILL, a slow step, an I/O error. Compiled in only
//! with the `fault-injection` feature; `EW_TEST_*` variables name the step (not `EDGEWATCH_*`
//! variables: those are configuration).

/// Kills the process with SIGKILL when `EW_TEST_CRASH_AT` is `step`.
pub fn crash_point(_step: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("EW_TEST_CRASH_AT").as_deref() == Ok(_step) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// A slow step: sleeps `EW_TEST_SLOW_<STEP>_MS` milliseconds when set (inference slower than the
/// camera, in the tests that show capture never waits for it).
pub fn slow(_step: &str) {
    #[cfg(feature = "fault-injection")]
    if let Some(ms) = std::env::var(format!("EW_TEST_SLOW_{_step}_MS")).ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// A CPU hog inside a step: while the file that `EW_TEST_BUSY_<STEP>` names exists, each call
/// spins for `EW_TEST_BUSY_<STEP>_MS` milliseconds (default 100). The adaptive-rate test turns it
/// on and off from outside by creating and removing the file.
pub fn busy(_step: &str) {
    #[cfg(feature = "fault-injection")]
    if let Ok(flag) = std::env::var(format!("EW_TEST_BUSY_{_step}")) {
        if std::path::Path::new(&flag).exists() {
            let ms = std::env::var(format!("EW_TEST_BUSY_{_step}_MS")).ok().and_then(|v| v.parse().ok());
            let until = std::time::Instant::now() + std::time::Duration::from_millis(ms.unwrap_or(100));
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}

/// An I/O error (EIO) at a named step when `EW_TEST_FAIL_AT` is `step`: a disk that fails for
/// another reason than space.
pub fn io_error(_step: &str) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if std::env::var("EW_TEST_FAIL_AT").as_deref() == Ok(_step) {
        return Err(std::io::Error::from_raw_os_error(5));
    }
    Ok(())
}
