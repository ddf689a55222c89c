//! Cost of turning a finished event into a clip in the spool: H.264 encoding of a 10 s,
//! 640x480, 15 fps clip from the camera's JPEGs, fsync and rename. Prints wall and CPU time.
//!
//! `cargo bench --bench clip`

use std::io::{BufWriter, Cursor};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgewatch::clip::encode::{encode_mp4, ClipFrame, EncodeSettings};
use edgewatch::source::AviReader;

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let mut avi = AviReader::new(Cursor::new(edgewatch::demo::DEMO_VIDEO)).unwrap();
    let fps = avi.info().fps;
    let mut frames = Vec::new();
    while let Some(f) = avi.next_frame().unwrap() {
        let pts = Duration::from_secs_f64(frames.len() as f64 / fps);
        frames.push(ClipFrame { jpeg: Bytes::from(f), pts });
        if frames.len() as f64 > 10.0 * fps {
            break;
        }
    }
    let settings = EncodeSettings { bitrate_bps: 1_500_000, fps: fps as f32, keyframe_interval: (2.0 * fps) as u32 };
    let dir = tempfile::tempdir().unwrap();
    let runs = 3;
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut bytes = 0;
    for i in 0..runs {
        let tmp = dir.path().join(format!("clip{i}.mp4.tmp"));
        let (w0, c0) = (Instant::now(), thread_cpu());
        let f = std::fs::File::create(&tmp).unwrap();
        let mut out = BufWriter::new(f);
        let stats = encode_mp4(&frames, &settings, &mut out).unwrap();
        let f = out.into_inner().unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, dir.path().join(format!("clip{i}.mp4"))).unwrap();
        walls.push(w0.elapsed());
        cpus.push(thread_cpu() - c0);
        bytes = stats.bytes;
    }
    let mid = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "clip benchmark: {} frames of 640x480 JPEG -> H.264/MP4 at 1.5 Mbit/s, {runs} runs (median)",
        frames.len()
    );
    println!("  wall time end-of-post-roll -> clip in spool: {:.3} s", mid(&mut walls).as_secs_f64());
    println!("  CPU time of the encoder thread:              {:.3} s", mid(&mut cpus).as_secs_f64());
    println!("  clip size: {:.2} MB", bytes as f64 / 1e6);
}
