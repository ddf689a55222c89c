//! The detector's own resize, for bench/resize-check.sh: reads raw RGB frames (W x H x 3 bytes
//! each) from stdin, resizes each through `edgewatch::infer::Preprocessor` (the code `detect`
//! runs: fast_image_resize, Convolution(Bilinear)) with mean 0 and std 1, so that the tensor is
//! pixel / 255, and writes the resized 8-bit RGB (OUT_W x OUT_H x 3 bytes per frame) to stdout.
//!
//! Usage: resize_check MANIFEST W H OUT_W OUT_H < frames.rgb > resized.rgb

use std::io::{Read, Write};

use edgewatch::infer::{Layout, Preprocessor, Rgb};
use edgewatch::model::Manifest;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 6, "usage: resize_check MANIFEST W H OUT_W OUT_H < frames.rgb > resized.rgb");
    let n = |i: usize| -> anyhow::Result<u32> { Ok(args[i].parse()?) };
    let (w, h, ow, oh) = (n(2)?, n(3)?, n(4)?, n(5)?);
    let mut m = Manifest::parse(&std::fs::read_to_string(&args[1])?, false, &args[1])?;
    (m.input.width, m.input.height, m.input.mean, m.input.std) = (ow, oh, [0.0; 3], [1.0; 3]);
    let mut pre = Preprocessor::new(&m, Layout::Nhwc);
    let mut frame = vec![0u8; (w * h * 3) as usize];
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    loop {
        match stdin.read_exact(&mut frame) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let t = pre.tensor_from_rgb(Rgb { width: w, height: h, data: frame.clone() })?;
        let px = t.try_as_plain_ram().and_then(|v| v.as_slice::<f32>()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let out: Vec<u8> = px.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        stdout.write_all(&out)?;
    }
    Ok(())
}
