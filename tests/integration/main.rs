//! One integration-test binary (it links once): real ffmpeg fixtures, a real S3-compatible
//! server, ffprobe and promtool. See README "Running the tests" for what must be installed.

mod common;
mod config_cases;
mod detector;
mod events;
mod failures;
mod model;
mod motion;
mod pod;
mod rate;
mod s3;
mod sandbox;
mod units;
mod watchdog;

/// A plain `cargo test` builds without the features some tests need; these stand in for them,
/// so the run says what it left out instead of leaving it out silently (`scripts/test.sh` runs
/// `--all-features`).
#[cfg(not(feature = "fault-injection"))]
#[test]
#[ignore = "the SIGKILL tests need `--features fault-injection` (scripts/test.sh uses --all-features)"]
fn sigkill_tests_need_the_fault_injection_feature() {}

#[cfg(not(feature = "onnxruntime"))]
#[test]
#[ignore = "the onnxruntime tests need `--features onnxruntime` (scripts/test.sh uses --all-features)"]
fn onnxruntime_tests_need_the_onnxruntime_feature() {}
