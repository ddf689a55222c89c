//! edgewatch: violence detection for fleets of Raspberry Pi 4 camera nodes.
//!
//! # Layout
//! - [`config`]: the typed, strict, layered configuration shared by every role; [`check`]: what
//!   `check-config` checks beyond the file (model, source, spool, archive, SMTP).
//! - [`source`]: frame sources (V4L2 camera, MJPEG-in-AVI file).
//! - [`model`] and [`infer`]: the two-file model contract and streaming inference with tract (or onnxruntime, cargo feature `onnxruntime`).
//! - [`motion`]: motion detection on a small grayscale image, to gate the backbone.
//! - [`clip`]: the K-of-N decision, the pre-roll ring, clip cutting and H.264/MP4 encoding.
//! - [`spool`]: the on-disk protocol between the detector and the watchdog.
//! - [`archive`] and [`s3`]: the durable upload queue to S3 or a directory.
//! - [`detector`]: the `detect` role wiring it all together; [`demo`] runs it on bundled data.
//! - [`watchdog`]: the `watch` role: durable, rate-limited alert emails over SMTP.
//! - [`telemetry`]: logs, Prometheus metrics, `/healthz` and `/readyz`.
//! - [`alloc`]: the C allocator's set-up; [`shutdown`]: SIGTERM/SIGINT handling; [`fault`]: crash points for the fault-injection tests.

pub mod alloc;
pub mod archive;
pub mod check;
pub mod clip;
pub mod config;
pub mod demo;
pub mod detector;
pub mod fault;
pub mod infer;
pub mod model;
pub mod motion;
pub mod s3;
pub mod shutdown;
pub mod source;
pub mod spool;
pub mod telemetry;
pub mod watchdog;
