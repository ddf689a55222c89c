//! V4L2 camera capture through the `v4l` crate: MJPEG preferred, YUYV (JPEG-encoded once) as fallback.
//!
//! No camera exists on the development machines, so this path is exercised on the Pi only; the
//! YUYV → JPEG conversion it relies on is unit-tested below.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{Frame, FrameSource, SourceError};
use crate::config::PixelFormat;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Negotiated {
    Mjpeg,
    Yuyv,
}

pub struct V4l2Source {
    path: PathBuf,
    stream: Stream<'static>,
    format: Negotiated,
    width: u32,
    height: u32,
    fps: f64,
    jpeg_quality: u8,
    seq: u64,
    started: Instant,
    // Kept so the device stays open as long as the stream.
    _device: Device,
}

impl V4l2Source {
    pub fn open(
        path: &Path,
        width: u32,
        height: u32,
        fps: u32,
        want: PixelFormat,
        jpeg_quality: u8,
    ) -> Result<Self, SourceError> {
        let what = path.display().to_string();
        let open_err = |source| SourceError::Open { what: what.clone(), source };
        let dev = Device::with_path(path).map_err(open_err)?;
        let offered: Vec<FourCC> = dev.enum_formats().map_err(open_err)?.into_iter().map(|d| d.fourcc).collect();
        let mjpg = FourCC::new(b"MJPG");
        let yuyv = FourCC::new(b"YUYV");
        let choice = match want {
            PixelFormat::Mjpeg => Negotiated::Mjpeg,
            PixelFormat::Yuyv => Negotiated::Yuyv,
            PixelFormat::Auto if offered.contains(&mjpg) => Negotiated::Mjpeg,
            PixelFormat::Auto if offered.contains(&yuyv) => Negotiated::Yuyv,
            PixelFormat::Auto => {
                return Err(SourceError::Unsupported(format!(
                    "{what} offers neither MJPG nor YUYV (offers: {})",
                    offered.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let fourcc = if choice == Negotiated::Mjpeg { mjpg } else { yuyv };
        let mut fmt = dev.format().map_err(open_err)?;
        fmt.width = width;
        fmt.height = height;
        fmt.fourcc = fourcc;
        let fmt = dev.set_format(&fmt).map_err(open_err)?;
        if fmt.fourcc != fourcc {
            return Err(SourceError::Unsupported(format!(
                "{what} refused pixel format {fourcc} (gave {})",
                fmt.fourcc
            )));
        }
        let params = dev.set_params(&Parameters::with_fps(fps)).map_err(open_err)?;
        let got_fps = if params.interval.numerator > 0 {
            params.interval.denominator as f64 / params.interval.numerator as f64
        } else {
            fps as f64
        };
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4).map_err(open_err)?;
        // A camera that stops delivering (unplugged hub, dead sensor) must surface as an error.
        stream.set_timeout(Duration::from_secs(5));
        tracing::info!(device = %what, width = fmt.width, height = fmt.height, format = %fourcc, fps = got_fps, "camera opened");
        Ok(V4l2Source {
            path: path.to_path_buf(),
            stream,
            format: choice,
            width: fmt.width,
            height: fmt.height,
            fps: got_fps,
            jpeg_quality,
            seq: 0,
            started: Instant::now(),
            _device: dev,
        })
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let what = self.path.display().to_string();
        let (buf, meta) = self.stream.next().map_err(|source| SourceError::Io { what, source })?;
        let data = &buf[..(meta.bytesused as usize).min(buf.len())];
        let jpeg = match self.format {
            Negotiated::Mjpeg => Bytes::copy_from_slice(data),
            // An undecodable YUYV buffer (short read) yields an empty frame that decode skips and counts.
            Negotiated::Yuyv => {
                yuyv_to_jpeg(data, self.width, self.height, self.jpeg_quality).map(Bytes::from).unwrap_or_default()
            }
        };
        let frame = Frame { seq: self.seq, pts: self.started.elapsed(), wall: Utc::now(), jpeg };
        self.seq += 1;
        Ok(Some(frame))
    }

    fn fps(&self) -> f64 {
        self.fps
    }

    fn describe(&self) -> String {
        format!(
            "camera {} ({}x{} {:?} @ {:.1} fps)",
            self.path.display(),
            self.width,
            self.height,
            self.format,
            self.fps
        )
    }

    fn realtime(&self) -> bool {
        true
    }
}

/// Compresses a YUYV (4:2:2) frame to JPEG once, so the clip ring holds small frames.
pub fn yuyv_to_jpeg(yuyv: &[u8], width: u32, height: u32, quality: u8) -> Option<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || yuyv.len() < w * h * 2 {
        return None;
    }
    // Expand to interleaved YCbCr 4:4:4, which jpeg-encoder takes directly.
    let mut ycc = Vec::with_capacity(w * h * 3);
    for px in yuyv[..w * h * 2].chunks_exact(4) {
        let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
        ycc.extend_from_slice(&[y0, u, v, y1, u, v]);
    }
    let mut out = Vec::with_capacity(w * h / 4);
    let enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.encode(&ycc, width as u16, height as u16, jpeg_encoder::ColorType::Ycbcr).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_to_a_decodable_jpeg_with_the_right_colours() {
        let (w, h) = (64usize, 48usize);
        // Mid-grey luma, neutral chroma, with a bright left half.
        let mut yuyv = Vec::with_capacity(w * h * 2);
        for _y in 0..h {
            for x in (0..w).step_by(2) {
                let l = if x < w / 2 { 220 } else { 60 };
                yuyv.extend_from_slice(&[l, 128, l, 128]);
            }
        }
        let jpeg = yuyv_to_jpeg(&yuyv, w as u32, h as u32, 90).expect("encodes");
        let rgb = crate::infer::decode_rgb(&jpeg).expect("decodes");
        assert_eq!((rgb.width, rgb.height), (w as u32, h as u32));
        let px = |x: usize, y: usize| rgb.data[(y * w + x) * 3] as i32;
        assert!((px(5, 5) - 220).abs() < 8, "left {}", px(5, 5));
        assert!((px(60, 40) - 60).abs() < 8, "right {}", px(60, 40));
        assert!(yuyv_to_jpeg(&yuyv[..100], w as u32, h as u32, 90).is_none());
    }
}
