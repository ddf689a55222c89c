//! Decoding frames for inference at the size the model needs, not the camera's.
//!
//! A 640x480 frame for a 112x112 model is 16 times more pixels than the resize keeps. JPEG can
//! drop them before they exist: libjpeg-turbo's reduced inverse DCT turns each 8x8 block into a
//! 4x4, 2x2 or 1x1 block (1/2, 1/4, 1/8), which also shrinks the colour conversion. What is left
//! is the entropy decoding, which no scaling can skip. Clips keep the camera's original JPEGs.
//!
//! The detector decodes at the smallest 1/2^k that is still at least twice the model's input each
//! way (640x480 -> 320x240 for 112x112; the whole frame for 224x224), then resizes as before.
//! Scaling right down to the input (160x120 for 112) made the reduced IDCT the only low-pass filter,
//! and the demo model, trained on full decodes, scored calm windows up to 0.37 higher (decisions
//! unchanged, margin to the threshold down from 0.49 to 0.19); at 2x the largest difference is
//! 0.08, of which 0.06 is libjpeg-turbo against zune-jpeg at full size (their rounding differs).
//! `tests/integration/model.rs` holds the scores to that.

use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

use super::InferError;

/// How inference frames are decoded (`model.decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decode {
    /// DCT-domain scaling to the smallest 1/2^k of the frame not below twice the model's input,
    /// then the same bilinear resize. Scores agree with `full` within the tolerance the tests state.
    Scaled,
    /// The whole frame, then the resize: what a Python pipeline does with OpenCV or Pillow.
    Full,
}

impl Decode {
    pub fn name(self) -> &'static str {
        match self {
            Decode::Scaled => "scaled",
            Decode::Full => "full",
        }
    }
}

/// Output pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pixels {
    Rgb,
    /// Luma only (the motion detector's input): no chroma conversion at all.
    Gray,
}

/// The denominator (1, 2, 4 or 8) of the smallest scale whose output still covers `min_w`x`min_h`.
pub fn scale_denominator(width: u32, height: u32, min_w: u32, min_h: u32) -> u32 {
    let scaled = |len: u32, d: u32| len.div_ceil(d);
    [8, 4, 2].into_iter().find(|&d| scaled(width, d) >= min_w && scaled(height, d) >= min_h).unwrap_or(1)
}

/// A libjpeg-turbo decompressor kept across frames (its tables and buffers are reused).
pub struct ScaledDecoder {
    tj: Option<Decompressor>,
}

impl Default for ScaledDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ScaledDecoder {
    pub fn new() -> Self {
        ScaledDecoder { tj: None }
    }

    /// Decodes `jpeg` at the smallest 1/2^k size not below `min_w`x`min_h` into `buf` (resized to
    /// fit); returns the decoded width and height.
    pub fn decode_into(
        &mut self,
        jpeg: &[u8],
        min_w: u32,
        min_h: u32,
        pixels: Pixels,
        buf: &mut Vec<u8>,
    ) -> Result<(u32, u32), InferError> {
        let err = |e: turbojpeg::Error| InferError::Decode(e.to_string());
        let tj = match &mut self.tj {
            Some(tj) => tj,
            None => self.tj.insert(Decompressor::new().map_err(err)?),
        };
        let header = tj.read_header(jpeg).map_err(err)?;
        if header.width > 8192 || header.height > 8192 {
            return Err(InferError::Decode(format!("{}x{} is larger than 8192x8192", header.width, header.height)));
        }
        let d = scale_denominator(header.width as u32, header.height as u32, min_w, min_h);
        let factor = ScalingFactor::new(1, d as usize);
        tj.set_scaling_factor(factor).map_err(err)?;
        let scaled = header.scaled(factor);
        let (format, bpp) = match pixels {
            Pixels::Rgb => (PixelFormat::RGB, 3),
            Pixels::Gray => (PixelFormat::GRAY, 1),
        };
        buf.resize(scaled.width * scaled.height * bpp, 0);
        let image = Image {
            pixels: &mut buf[..],
            width: scaled.width,
            pitch: scaled.width * bpp,
            height: scaled.height,
            format,
        };
        tj.decompress(jpeg, image).map_err(err)?;
        Ok((scaled.width as u32, scaled.height as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_smallest_that_still_covers_the_model_input() {
        // The two cases: 640x480 to 160x120 for 112, to 320x240 for 224.
        assert_eq!(scale_denominator(640, 480, 112, 112), 4);
        assert_eq!(scale_denominator(640, 480, 224, 224), 2);
        assert_eq!(scale_denominator(640, 480, 80, 60), 8);
        assert_eq!(scale_denominator(640, 480, 481, 10), 1);
        // Odd sizes round up the way libjpeg-turbo does (ceil), so 8 still covers 81x61 -> 11x8.
        assert_eq!(scale_denominator(81, 61, 11, 8), 8);
        assert_eq!(scale_denominator(81, 61, 11, 9), 4);
    }

    #[test]
    fn scaled_output_matches_a_full_decode_box_filtered() {
        // A real camera-like JPEG (4:2:2, as MJPEG cameras send) made by the crate's encoder.
        let (w, h) = (640u32, 480u32);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&[(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8]);
            }
        }
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let full = super::super::decode_rgb(&jpeg).unwrap();
        let mut dec = ScaledDecoder::new();
        let mut buf = Vec::new();
        let (sw, sh) = dec.decode_into(&jpeg, 112, 112, Pixels::Rgb, &mut buf).unwrap();
        assert_eq!((sw, sh), (160, 120));
        // Each scaled pixel is the mean of its 4x4 block of the full decode, within JPEG rounding.
        let mut worst = 0i32;
        for y in 0..sh as usize {
            for x in 0..sw as usize {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in 0..4 {
                        for dx in 0..4 {
                            sum += full.data[((y * 4 + dy) * w as usize + x * 4 + dx) * 3 + c] as u32;
                        }
                    }
                    let diff = (buf[(y * sw as usize + x) * 3 + c] as i32 - (sum / 16) as i32).abs();
                    worst = worst.max(diff);
                }
            }
        }
        assert!(worst <= 6, "scaled vs full-then-box differ by up to {worst} grey levels");
        let (gw, gh) = dec.decode_into(&jpeg, 80, 60, Pixels::Gray, &mut buf).unwrap();
        assert_eq!((gw, gh, buf.len()), (80, 60, 80 * 60));
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_crash() {
        let mut dec = ScaledDecoder::new();
        let mut buf = Vec::new();
        let e = dec.decode_into(b"not a jpeg", 112, 112, Pixels::Rgb, &mut buf).unwrap_err();
        assert!(matches!(e, InferError::Decode(_)), "{e}");
        // The decoder is still usable after a bad frame.
        assert!(dec.decode_into(&[0xFF, 0xD8, 0xFF], 112, 112, Pixels::Rgb, &mut buf).is_err());
    }
}
