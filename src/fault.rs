//! Test-only crash points: a real SIGKILL at a named step, for the fault-injection tests.
//! Compiled in only with the `fault-injection` feature; `EW_TEST_CRASH_AT` names the step
//! (not an `EDGEWATCH_*` variable: those are configuration).

/// Kills the process with SIGKILL when `EW_TEST_CRASH_AT` is `step`.
pub fn crash_point(_step: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("EW_TEST_CRASH_AT").as_deref() == Ok(_step) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
