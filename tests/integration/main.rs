//! One integration-test binary (it links once): real ffmpeg fixtures, a real S3-compatible
//! server, ffprobe and promtool. See README "Running the tests" for what must be installed.

mod common;
mod config_cases;
mod detector;
mod events;
mod failures;
mod model;
mod pod;
mod s3;
mod watchdog;
