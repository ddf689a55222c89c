//! Encode a clip of captured JPEG frames into an H.264 (Constrained Baseline) MP4.
//!
//! Pipeline, one frame at a time (no clip-sized buffer of raw frames is ever held):
//! JPEG --zune-jpeg--> YCbCr 4:4:4 (or luma / RGB for unusual JPEGs) --> I420 limited range
//! --openh264--> Annex-B NAL units --> AVCC sample --mp4--> in-memory MP4 --> faststart --> `out`.
//!
//! The compressed MP4 is assembled in memory (it is small: ~bitrate x duration) so that the
//! `moov` box can be moved in front of `mdat` ("faststart"), which lets browsers and phones
//! start playing before the whole attachment has been read.

use std::io::{Cursor, Seek, Write};
use std::time::Duration;

use bytes::Bytes;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, VuiConfig,
};
use openh264::formats::YUVSlices;
use openh264::{OpenH264API, Timestamp};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Media timescale (ticks per second) used for the MP4 movie and track: the usual video clock.
const TIMESCALE: u32 = 90_000;

/// One compressed frame as captured, with its time relative to the clip's first frame.
#[derive(Clone, Debug)]
pub struct ClipFrame {
    pub jpeg: Bytes,
    pub pts: Duration,
}

#[derive(Clone, Debug)]
pub struct EncodeSettings {
    /// Target bitrate in bits per second (e.g. 1_500_000 keeps 10 s of 640x480 around 2 MB).
    pub bitrate_bps: u32,
    /// Nominal frame rate, used for the last frame's duration and the encoder's rate control.
    pub fps: f32,
    /// Keyframe interval in frames. 0 means only the first frame is a keyframe
    /// (plus any the encoder inserts on scene changes).
    pub keyframe_interval: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EncodeStats {
    /// Frames handed in.
    pub frames_in: usize,
    /// Frames that became a video sample (= the MP4's frame count).
    pub frames_encoded: usize,
    /// Frames left out: undecodable JPEG, size differing from the clip's, pts not after the
    /// previous frame's, or dropped by the encoder. Always `frames_in - frames_encoded`.
    pub frames_skipped: usize,
    /// Encoded width (the first decodable frame's width, rounded down to even).
    pub width: u32,
    /// Encoded height (the first decodable frame's height, rounded down to even).
    pub height: u32,
    /// Duration of the video track: last pts - first pts + 1/fps.
    pub duration: Duration,
    /// Bytes written to `out`.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("invalid encode settings: {0}")]
    InvalidSettings(String),
    #[error("no decodable JPEG frame in the clip")]
    NoDecodableFrames,
    #[error("H.264 encoder error: {0}")]
    Encoder(String),
    #[error("MP4 muxing error: {0}")]
    Mux(String),
    #[error("I/O error while writing the MP4: {0}")]
    Io(#[from] std::io::Error),
}

impl From<openh264::Error> for EncodeError {
    fn from(e: openh264::Error) -> Self {
        EncodeError::Encoder(e.to_string())
    }
}

impl From<mp4::Error> for EncodeError {
    fn from(e: mp4::Error) -> Self {
        match e {
            mp4::Error::IoError(io) => EncodeError::Io(io),
            other => EncodeError::Mux(other.to_string()),
        }
    }
}

/// Encode `frames` (JPEGs of any size) into an H.264-in-MP4 file written to `out`.
///
/// The first decodable frame fixes the clip size; frames of another size are skipped and
/// counted, as are undecodable JPEGs and frames whose pts is not after the previous frame's.
/// Odd widths/heights are cropped by one pixel (4:2:0 needs even dimensions).
/// Each sample lasts until the next sample's pts; the last one lasts `1 / fps`.
/// The output is "faststart" (`moov` before `mdat`); `out` is written sequentially from its
/// current position.
pub fn encode_mp4<W: Write + Seek>(
    frames: &[ClipFrame],
    settings: &EncodeSettings,
    mut out: W,
) -> Result<EncodeStats, EncodeError> {
    validate(settings)?;

    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(settings.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(settings.fps))
        .intra_frame_period(IntraFramePeriod::from_num_frames(settings.keyframe_interval))
        // Every decodable frame becomes a sample; rate control may not drop frames.
        .skip_frames(false)
        // One slice per frame: extra threads buy nothing and the Pi has other work to do.
        .num_threads(1)
        // Our I420 is BT.601 limited range (what JPEG YCbCr maps to); say so in the SPS.
        .vui(VuiConfig::bt601());
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
    // OpenH264 prints its own warnings to stderr while it initialises, before the crate sets
    // the configured (quiet) trace level: set it first. Trace options are the ones OpenH264
    // accepts before initialisation.
    let mut quiet = openh264_sys2::WELS_LOG_QUIET as std::ffi::c_int;
    // SAFETY: the encoder is alive; the option takes a pointer to a c_int, read during the call.
    unsafe {
        encoder.raw_api().set_option(openh264_sys2::ENCODER_OPTION_TRACE_LEVEL, std::ptr::addr_of_mut!(quiet).cast());
    }

    let mut jpeg = JpegScratch::default();
    let mut yuv = Yuv420::default();
    let mut mux: Option<Muxer> = None;
    // pts of the first frame fed to the encoder; all tick values are relative to it, so
    // rounding never accumulates.
    let mut origin: Option<Duration> = None;
    let mut last_fed_ticks: Option<u64> = None;
    let mut clip_size: Option<(usize, usize)> = None;
    let mut frames_encoded = 0usize;

    for frame in frames {
        // Timeline must be strictly increasing (in ticks) or the frame gets zero duration.
        if let (Some(o), Some(last)) = (origin, last_fed_ticks) {
            if frame.pts < o || ticks_since(o, frame.pts) <= last {
                continue;
            }
        }

        let Some((w, h, layout)) = jpeg.decode(&frame.jpeg, clip_size) else {
            continue;
        };
        let (ew, eh) = (w & !1, h & !1);
        if ew == 0 || eh == 0 {
            continue;
        }
        if clip_size.is_none() {
            clip_size = Some((w, h));
        }
        yuv.fill(&jpeg.buf, layout, w, ew, eh);

        let o = *origin.get_or_insert(frame.pts);
        let ticks = ticks_since(o, frame.pts);
        last_fed_ticks = Some(ticks);
        let millis = u64::try_from(frame.pts.saturating_sub(o).as_millis()).unwrap_or(u64::MAX);

        let src = YUVSlices::new((&yuv.y, &yuv.u, &yuv.v), (ew, eh), (ew, ew / 2, ew / 2));
        let bitstream = encoder.encode_at(&src, Timestamp::from_millis(millis))?;
        let mut au = AccessUnit::default();
        for l in 0..bitstream.num_layers() {
            let Some(layer) = bitstream.layer(l) else {
                continue;
            };
            for n in 0..layer.nal_count() {
                if let Some(nal) = layer.nal_unit(n) {
                    au.push_annexb(nal);
                }
            }
        }
        if au.is_empty() {
            // Encoder dropped the frame (should not happen with skip_frames(false)); the
            // previous sample simply lasts until the next one.
            continue;
        }

        if mux.is_none() {
            let (Some(sps), Some(pps)) = (au.sps.clone(), au.pps.clone()) else {
                return Err(EncodeError::Encoder("first encoded frame carries no SPS/PPS".into()));
            };
            mux = Some(Muxer::new(ew, eh, sps, pps)?);
        }
        let m = mux.as_mut().expect("muxer initialised above");
        m.push(au, ticks)?;
        frames_encoded += 1;
    }

    let Some(mux) = mux else {
        return Err(EncodeError::NoDecodableFrames);
    };
    let last_duration = (f64::from(TIMESCALE) / f64::from(settings.fps)).round().max(1.0) as u32;
    let (file, total_ticks) = mux.finish(last_duration)?;
    let mut written = 0u64;
    for part in faststart(&file) {
        out.write_all(&part)?;
        written += part.len() as u64;
    }
    out.flush()?;

    let (width, height) = clip_size.map(|(w, h)| ((w & !1) as u32, (h & !1) as u32)).unwrap_or_default();
    Ok(EncodeStats {
        frames_in: frames.len(),
        frames_encoded,
        frames_skipped: frames.len() - frames_encoded,
        width,
        height,
        duration: Duration::from_nanos(total_ticks * 1_000_000_000 / u64::from(TIMESCALE)),
        bytes: written,
    })
}

fn validate(s: &EncodeSettings) -> Result<(), EncodeError> {
    if !(s.fps.is_finite() && s.fps > 0.0 && s.fps <= 240.0) {
        return Err(EncodeError::InvalidSettings(format!("fps must be in (0, 240], got {}", s.fps)));
    }
    if s.bitrate_bps < 1_000 || s.bitrate_bps > i32::MAX as u32 {
        return Err(EncodeError::InvalidSettings(format!(
            "bitrate_bps must be in [1000, {}], got {}",
            i32::MAX,
            s.bitrate_bps
        )));
    }
    Ok(())
}

/// `pts - origin` in TIMESCALE ticks, rounded to nearest.
fn ticks_since(origin: Duration, pts: Duration) -> u64 {
    let ns = pts.saturating_sub(origin).as_nanos();
    let t = (ns * u128::from(TIMESCALE) + 500_000_000) / 1_000_000_000;
    u64::try_from(t).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------------------------------
// JPEG decoding
// ------------------------------------------------------------------------------------------

/// Pixel layout of `JpegScratch::buf` after a successful decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Interleaved full-resolution Y Cb Cr, full range (JFIF), 3 bytes per pixel.
    YCbCr,
    /// Grey, 1 byte per pixel, full range.
    Luma,
    /// Interleaved R G B (Adobe RGB-transform, CMYK and YCCK JPEGs), 3 bytes per pixel.
    Rgb,
}

/// A decode buffer reused across frames, so only one decoded frame exists at a time.
#[derive(Default)]
struct JpegScratch {
    buf: Vec<u8>,
}

impl JpegScratch {
    /// Decode `jpeg` into `self.buf`. `None` if it is not decodable or, when `expect` is given,
    /// has a different size (checked from the headers, before the costly entropy decode).
    fn decode(&mut self, jpeg: &[u8], expect: Option<(usize, usize)>) -> Option<(usize, usize, Layout)> {
        let mut dec = JpegDecoder::new(ZCursor::new(jpeg));
        dec.decode_headers().ok()?;
        let (w, h) = dec.dimensions()?;
        if expect.is_some_and(|e| e != (w, h)) {
            return None;
        }
        // Ask for YCbCr straight from the IDCT (no colour conversion) whenever the JPEG is
        // YCbCr, which is every camera/JFIF JPEG; fall back to RGB for exotic colour spaces.
        let (out_cs, layout) = match dec.input_colorspace()? {
            ColorSpace::YCbCr => (ColorSpace::YCbCr, Layout::YCbCr),
            ColorSpace::Luma => (ColorSpace::Luma, Layout::Luma),
            _ => (ColorSpace::RGB, Layout::Rgb),
        };
        let opts: DecoderOptions = dec.options().jpeg_set_out_colorspace(out_cs);
        dec.set_options(opts);
        let need = dec.output_buffer_size()?;
        self.buf.resize(need, 0);
        dec.decode_into(&mut self.buf).ok()?;
        Some((w, h, layout))
    }
}

// ------------------------------------------------------------------------------------------
// Colour conversion to I420, BT.601 limited ("TV") range
// ------------------------------------------------------------------------------------------

/// Full-range -> limited-range maps: luma [0,255] -> [16,235], chroma [0,255] -> [16,240].
const Y_LIMITED: [u8; 256] = range_lut(219);
const C_LIMITED: [u8; 256] = range_lut(224);

const fn range_lut(span: u32) -> [u8; 256] {
    let mut lut = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        lut[i] = (16 + (i as u32 * span + 127) / 255) as u8;
        i += 1;
    }
    lut
}

/// Reusable planar I420 frame.
#[derive(Default)]
struct Yuv420 {
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Yuv420 {
    /// Convert the top-left `w x h` (both even) of a decoded `src_w`-wide image.
    fn fill(&mut self, src: &[u8], layout: Layout, src_w: usize, w: usize, h: usize) {
        let (cw, ch) = (w / 2, h / 2);
        self.y.resize(w * h, 0);
        self.u.resize(cw * ch, 0);
        self.v.resize(cw * ch, 0);
        let bpp = if layout == Layout::Luma { 1 } else { 3 };
        let stride = src_w * bpp;

        for j in 0..ch {
            let r0 = &src[2 * j * stride..][..w * bpp];
            let r1 = &src[(2 * j + 1) * stride..][..w * bpp];
            let (y0, y1) = self.y[2 * j * w..(2 * j + 2) * w].split_at_mut(w);
            let u = &mut self.u[j * cw..(j + 1) * cw];
            let v = &mut self.v[j * cw..(j + 1) * cw];
            match layout {
                Layout::YCbCr => {
                    let it = r0.chunks_exact(6).zip(r1.chunks_exact(6));
                    let it = it.zip(y0.chunks_exact_mut(2).zip(y1.chunks_exact_mut(2)));
                    for (((a, b), (ya, yb)), (u, v)) in it.zip(u.iter_mut().zip(v.iter_mut())) {
                        ya[0] = Y_LIMITED[a[0] as usize];
                        ya[1] = Y_LIMITED[a[3] as usize];
                        yb[0] = Y_LIMITED[b[0] as usize];
                        yb[1] = Y_LIMITED[b[3] as usize];
                        let cb = (u32::from(a[1]) + u32::from(a[4]) + u32::from(b[1]) + u32::from(b[4]) + 2) / 4;
                        let cr = (u32::from(a[2]) + u32::from(a[5]) + u32::from(b[2]) + u32::from(b[5]) + 2) / 4;
                        *u = C_LIMITED[cb as usize];
                        *v = C_LIMITED[cr as usize];
                    }
                }
                Layout::Luma => {
                    for (d, s) in y0.iter_mut().zip(r0) {
                        *d = Y_LIMITED[*s as usize];
                    }
                    for (d, s) in y1.iter_mut().zip(r1) {
                        *d = Y_LIMITED[*s as usize];
                    }
                    u.fill(128);
                    v.fill(128);
                }
                Layout::Rgb => {
                    let it = r0.chunks_exact(6).zip(r1.chunks_exact(6));
                    let it = it.zip(y0.chunks_exact_mut(2).zip(y1.chunks_exact_mut(2)));
                    for (((a, b), (ya, yb)), (u, v)) in it.zip(u.iter_mut().zip(v.iter_mut())) {
                        ya[0] = rgb_to_y(&a[0..3]);
                        ya[1] = rgb_to_y(&a[3..6]);
                        yb[0] = rgb_to_y(&b[0..3]);
                        yb[1] = rgb_to_y(&b[3..6]);
                        let s =
                            |k: usize| i32::from(a[k]) + i32::from(a[k + 3]) + i32::from(b[k]) + i32::from(b[k + 3]);
                        let (r, g, bl) = (s(0), s(1), s(2));
                        // BT.601 limited, sums of 4 pixels => >> 10 instead of >> 8.
                        *u = (((-38 * r - 74 * g + 112 * bl + 512) >> 10) + 128).clamp(16, 240) as u8;
                        *v = (((112 * r - 94 * g - 18 * bl + 512) >> 10) + 128).clamp(16, 240) as u8;
                    }
                }
            }
        }
    }
}

#[inline]
fn rgb_to_y(p: &[u8]) -> u8 {
    let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

// ------------------------------------------------------------------------------------------
// Annex-B -> AVCC
// ------------------------------------------------------------------------------------------

const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const NAL_FILLER: u8 = 12;

/// One encoded frame: its SPS/PPS (if the encoder emitted them) and the remaining NAL units
/// as a length-prefixed (4-byte) AVCC sample.
#[derive(Default)]
struct AccessUnit {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    avcc: Vec<u8>,
    is_idr: bool,
}

impl AccessUnit {
    fn push_annexb(&mut self, nal: &[u8]) {
        let nal = strip_start_code(nal);
        let Some(&header) = nal.first() else { return };
        match header & 0x1f {
            NAL_SPS => self.sps = Some(nal.to_vec()),
            NAL_PPS => self.pps = Some(nal.to_vec()),
            NAL_AUD | NAL_SEI | NAL_FILLER => {}
            t => {
                self.is_idr |= t == NAL_IDR;
                self.push_nal(nal);
            }
        }
    }

    fn push_nal(&mut self, nal: &[u8]) {
        self.avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.avcc.extend_from_slice(nal);
    }

    fn is_empty(&self) -> bool {
        self.avcc.is_empty()
    }
}

/// Drop a leading `00 00 01` / `00 00 00 01` start code, if any.
fn strip_start_code(nal: &[u8]) -> &[u8] {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    if zeros >= 2 && nal.get(zeros) == Some(&1) {
        &nal[zeros + 1..]
    } else {
        nal
    }
}

// ------------------------------------------------------------------------------------------
// MP4 muxing
// ------------------------------------------------------------------------------------------

struct Pending {
    ticks: u64,
    bytes: Bytes,
    is_sync: bool,
}

/// Writes samples one behind the encoder, because a sample's duration is only known once the
/// next frame's pts is.
struct Muxer {
    writer: mp4::Mp4Writer<Cursor<Vec<u8>>>,
    sps: Vec<u8>,
    pps: Vec<u8>,
    pending: Option<Pending>,
    start_ticks: u64,
    written_ticks: u64,
}

const TRACK_ID: u32 = 1;

impl Muxer {
    fn new(width: usize, height: usize, sps: Vec<u8>, pps: Vec<u8>) -> Result<Self, EncodeError> {
        let to_u16 =
            |v: usize| u16::try_from(v).map_err(|_| EncodeError::Mux(format!("dimension {v} too large for MP4")));
        let brand = |s: &[u8; 4]| mp4::FourCC::from(*s);
        let config = mp4::Mp4Config {
            major_brand: brand(b"isom"),
            minor_version: 512,
            compatible_brands: vec![brand(b"isom"), brand(b"iso2"), brand(b"avc1"), brand(b"mp41")],
            timescale: TIMESCALE,
        };
        let mut writer = mp4::Mp4Writer::write_start(Cursor::new(Vec::with_capacity(1 << 20)), &config)?;
        writer.add_track(&mp4::TrackConfig {
            track_type: mp4::TrackType::Video,
            timescale: TIMESCALE,
            language: "und".into(),
            media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
                width: to_u16(width)?,
                height: to_u16(height)?,
                seq_param_set: sps.clone(),
                pic_param_set: pps.clone(),
            }),
        })?;
        Ok(Self { writer, sps, pps, pending: None, start_ticks: 0, written_ticks: 0 })
    }

    fn push(&mut self, mut au: AccessUnit, ticks: u64) -> Result<(), EncodeError> {
        // With SpsPpsStrategy::ConstantId (the default) every IDR repeats the same SPS/PPS,
        // which already sit in avcC. Should they ever differ, keep them in-band.
        let changed =
            au.sps.as_ref().is_some_and(|s| *s != self.sps) || au.pps.as_ref().is_some_and(|p| *p != self.pps);
        if changed {
            let mut avcc = Vec::with_capacity(au.avcc.len() + 64);
            for ps in [au.sps.take(), au.pps.take()].into_iter().flatten() {
                avcc.extend_from_slice(&(ps.len() as u32).to_be_bytes());
                avcc.extend_from_slice(&ps);
            }
            avcc.extend_from_slice(&au.avcc);
            au.avcc = avcc;
        }
        if let Some(prev) = self.pending.take() {
            let duration = ticks - prev.ticks;
            self.write(prev, duration)?;
        } else {
            self.start_ticks = ticks;
            self.written_ticks = ticks;
        }
        self.pending = Some(Pending { ticks, bytes: Bytes::from(au.avcc), is_sync: au.is_idr });
        Ok(())
    }

    fn write(&mut self, p: Pending, duration: u64) -> Result<(), EncodeError> {
        let duration = u32::try_from(duration)
            .map_err(|_| EncodeError::Mux(format!("gap of {duration} ticks between frames is too long")))?;
        self.writer.write_sample(
            TRACK_ID,
            &mp4::Mp4Sample {
                start_time: p.ticks - self.start_ticks,
                duration,
                rendering_offset: 0,
                is_sync: p.is_sync,
                bytes: p.bytes,
            },
        )?;
        self.written_ticks = p.ticks + u64::from(duration);
        Ok(())
    }

    /// Write the last sample with `last_duration` and close the file.
    /// Returns the MP4 bytes and the track duration in ticks.
    fn finish(mut self, last_duration: u32) -> Result<(Vec<u8>, u64), EncodeError> {
        if let Some(p) = self.pending.take() {
            self.write(p, u64::from(last_duration))?;
        }
        self.writer.write_end()?;
        let total = self.written_ticks - self.start_ticks;
        Ok((self.writer.into_writer().into_inner(), total))
    }
}

// ------------------------------------------------------------------------------------------
// Faststart: move `moov` in front of `mdat`, fixing chunk offsets; tidy a few header fields.
// ------------------------------------------------------------------------------------------

/// Top-level box: (start, end, fourcc).
fn top_level_boxes(data: &[u8]) -> Option<Vec<(usize, usize, [u8; 4])>> {
    let mut boxes = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let (size, hdr) = box_size(&data[pos..])?;
        let size = if size == 0 { data.len() - pos } else { size };
        if size < hdr || pos + size > data.len() {
            return None;
        }
        let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().ok()?;
        boxes.push((pos, pos + size, kind));
        pos += size;
    }
    Some(boxes)
}

/// (total size, header size) of the box at the start of `b`; size 0 = "to end of file".
fn box_size(b: &[u8]) -> Option<(usize, usize)> {
    let size32 = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?);
    b.get(4..8)?;
    if size32 == 1 {
        let size64 = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        Some((usize::try_from(size64).ok()?, 16))
    } else {
        Some((size32 as usize, 8))
    }
}

/// The pieces of `file` to write, in order, for a ftyp-moov-mdat layout (the mp4 crate puts
/// `moov` last). Falls back to `file` unchanged if its layout is unexpected or the shifted
/// offsets would not fit (valid either way, just not faststart).
fn faststart(file: &[u8]) -> Vec<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    let unchanged = vec![Cow::Borrowed(file)];
    let Some(boxes) = top_level_boxes(file) else {
        return unchanged;
    };
    let Some(&(moov_start, moov_end, _)) = boxes.iter().find(|b| &b.2 == b"moov") else {
        return unchanged;
    };
    let Some(&(mdat_start, _, _)) = boxes.iter().find(|b| &b.2 == b"mdat") else {
        return unchanged;
    };
    if moov_start < mdat_start {
        return unchanged;
    }
    let mut moov = file[moov_start..moov_end].to_vec();
    let shift = moov.len() as u64;
    if patch_moov(&mut moov, shift).is_none() {
        return unchanged;
    }
    vec![
        Cow::Borrowed(&file[..mdat_start]),
        Cow::Owned(moov),
        Cow::Borrowed(&file[mdat_start..moov_start]),
        Cow::Borrowed(&file[moov_end..]),
    ]
}

/// Walk the moov tree: add `shift` to every stco/co64 entry; on the way set
/// mvhd.next_track_id past our single track, mark tkhd enabled+in-movie+in-preview and give
/// the video track volume 0 (the mp4 crate writes 1 track flag and volume 1.0).
fn patch_moov(b: &mut [u8], shift: u64) -> Option<()> {
    let (size, hdr) = box_size(b)?;
    if size > b.len() || size < hdr {
        return None;
    }
    let b = &mut b[..size];
    let kind: [u8; 4] = b[4..8].try_into().ok()?;
    match &kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => {
            let mut pos = hdr;
            while pos + 8 <= b.len() {
                let (child, _) = box_size(&b[pos..])?;
                if child < 8 || pos + child > b.len() {
                    return None;
                }
                patch_moov(&mut b[pos..pos + child], shift)?;
                pos += child;
            }
        }
        b"stco" => {
            let n = u32::from_be_bytes(b.get(hdr + 4..hdr + 8)?.try_into().ok()?) as usize;
            for i in 0..n {
                let at = hdr + 8 + 4 * i;
                let slot = b.get_mut(at..at + 4)?;
                let v = u64::from(u32::from_be_bytes(slot.try_into().ok()?)) + shift;
                slot.copy_from_slice(&u32::try_from(v).ok()?.to_be_bytes());
            }
        }
        b"co64" => {
            let n = u32::from_be_bytes(b.get(hdr + 4..hdr + 8)?.try_into().ok()?) as usize;
            for i in 0..n {
                let at = hdr + 8 + 8 * i;
                let slot = b.get_mut(at..at + 8)?;
                let v = u64::from_be_bytes(slot.try_into().ok()?).checked_add(shift)?;
                slot.copy_from_slice(&v.to_be_bytes());
            }
        }
        b"mvhd" => {
            // next_track_id is the last field.
            let len = b.len();
            b.get_mut(len - 4..)?.copy_from_slice(&(TRACK_ID + 1).to_be_bytes());
        }
        b"tkhd" => {
            let version = *b.get(hdr)?;
            b.get_mut(hdr + 1..hdr + 4)?.copy_from_slice(&[0, 0, 0x07]);
            // volume: after ver/flags, times+id+reserved+duration (v0: 20, v1: 32), 8 reserved,
            // layer, alternate_group.
            let at = hdr + 4 + if version == 1 { 32 } else { 20 } + 8 + 4;
            b.get_mut(at..at + 2)?.copy_from_slice(&[0, 0]);
        }
        _ => {}
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const W: usize = 640;
    const H: usize = 480;

    fn jpeg_of(rgb: &[u8], w: usize, h: usize, color: jpeg_encoder::ColorType) -> Bytes {
        jpeg_q(rgb, w, h, color, 80)
    }

    fn jpeg_q(pixels: &[u8], w: usize, h: usize, color: jpeg_encoder::ColorType, quality: u8) -> Bytes {
        let mut v = Vec::new();
        jpeg_encoder::Encoder::new(&mut v, quality).encode(pixels, w as u16, h as u16, color).unwrap();
        Bytes::from(v)
    }

    /// Moving gradient with two moving boxes.
    fn synthetic_rgb(i: usize, w: usize, h: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; w * h * 3];
        let (bx, by) = ((i * 7) % (w - 80), (i * 5) % (h - 80));
        let (cx, cy) = (w - 60 - (i * 4) % (w - 60), (i * 3) % (h - 60));
        for y in 0..h {
            for x in 0..w {
                let p = &mut rgb[(y * w + x) * 3..][..3];
                let mut c = [((x + i * 3) % 256) as u8, ((y + i * 2) % 256) as u8, ((x + y) / 5 % 256) as u8];
                if (bx..bx + 80).contains(&x) && (by..by + 80).contains(&y) {
                    c = [230, 40, 40];
                }
                if (cx..cx + 60).contains(&x) && (cy..cy + 60).contains(&y) {
                    c = [30, 30, 220];
                }
                p.copy_from_slice(&c);
            }
        }
        rgb
    }

    fn settings() -> EncodeSettings {
        EncodeSettings { bitrate_bps: 1_500_000, fps: 15.0, keyframe_interval: 30 }
    }

    fn tmp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("edgewatch-encode-{}-{name}.mp4", std::process::id()))
    }

    fn tool(name: &str) -> Command {
        match Command::new(name).arg("-version").output() {
            Ok(o) if o.status.success() => Command::new(name),
            Ok(o) => panic!("`{name} -version` failed ({}); these tests need a working {name}", o.status),
            Err(e) => panic!(
                "{name} is required by the clip encoder tests but could not be run ({e}); \
                 install it (Debian: apt-get install ffmpeg)"
            ),
        }
    }

    fn ffprobe(path: &Path) -> serde_json::Value {
        let out = tool("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=codec_name,profile,width,height,nb_frames,duration"])
            .args(["-show_entries", "format=duration,format_name", "-of", "json"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "ffprobe complained: {}", String::from_utf8_lossy(&out.stderr));
        println!("ffprobe: {}", String::from_utf8_lossy(&out.stdout));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn ffmpeg_decodes_cleanly(path: &Path) {
        let out = tool("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output().unwrap();
        assert!(out.status.success(), "ffmpeg decode failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "ffmpeg decode errors: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// First frame of `path`, decoded by ffmpeg to RGB24.
    fn ffmpeg_first_frame_rgb(path: &Path) -> Vec<u8> {
        let out = tool("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn top_level_kinds(data: &[u8]) -> Vec<String> {
        top_level_boxes(data).unwrap().iter().map(|b| String::from_utf8_lossy(&b.2).into_owned()).collect()
    }

    fn f(v: &serde_json::Value) -> f64 {
        v.as_str().unwrap().parse().unwrap()
    }

    #[test]
    fn ten_seconds_of_640x480_with_gaps_and_a_corrupt_frame() {
        let s = settings();
        let frame_dt = Duration::from_secs_f64(1.0 / 15.0);
        let mut pts = Duration::ZERO;
        let mut frames = Vec::new();
        for i in 0..150 {
            // Irregular timing: two "dropped camera frame" gaps.
            if i == 40 {
                pts += frame_dt * 2;
            }
            if i == 100 {
                pts += Duration::from_millis(250);
            }
            let jpeg = if i == 75 {
                // Corrupt: a JPEG's first bytes followed by garbage.
                let good = jpeg_of(&synthetic_rgb(i, W, H), W, H, jpeg_encoder::ColorType::Rgb);
                let mut bad = good[..20].to_vec();
                bad.extend(std::iter::repeat_n(0xAB, 500));
                Bytes::from(bad)
            } else {
                jpeg_of(&synthetic_rgb(i, W, H), W, H, jpeg_encoder::ColorType::Rgb)
            };
            frames.push(ClipFrame { jpeg, pts });
            pts += frame_dt;
        }
        let expected = frames.last().unwrap().pts - frames[0].pts + Duration::from_secs_f64(1.0 / 15.0);

        let path = tmp_path("ten-seconds");
        let started = std::time::Instant::now();
        let stats = encode_mp4(&frames, &s, std::fs::File::create(&path).unwrap()).unwrap();
        let took = started.elapsed();
        println!("stats: {stats:?}, encode took {took:?}");

        assert_eq!(stats.frames_in, 150);
        assert_eq!(stats.frames_skipped, 1);
        assert_eq!(stats.frames_encoded, 149);
        assert_eq!((stats.width, stats.height), (640, 480));
        let interval = 1.0 / 15.0;
        assert!((stats.duration.as_secs_f64() - expected.as_secs_f64()).abs() < interval, "{stats:?} vs {expected:?}");
        let data = std::fs::read(&path).unwrap();
        assert_eq!(stats.bytes, data.len() as u64);
        assert!(data.len() < 3_000_000, "clip is {} bytes", data.len());
        assert_eq!(top_level_kinds(&data), ["ftyp", "moov", "mdat"], "expected a faststart layout");

        let probe = ffprobe(&path);
        let st = &probe["streams"][0];
        assert_eq!(st["codec_name"], "h264");
        assert!(st["profile"].as_str().unwrap().contains("Baseline"), "profile {}", st["profile"]);
        assert_eq!(st["width"], 640);
        assert_eq!(st["height"], 480);
        assert_eq!(f(&st["nb_frames"]) as usize, stats.frames_encoded);
        let exp = expected.as_secs_f64();
        assert!((f(&st["duration"]) - exp).abs() < interval, "stream duration {} vs {exp}", st["duration"]);
        assert!((f(&probe["format"]["duration"]) - exp).abs() < interval, "format duration vs {exp}");
        assert!(probe["format"]["format_name"].as_str().unwrap().contains("mp4"));

        ffmpeg_decodes_cleanly(&path);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn all_corrupt_input_is_an_error() {
        let frames: Vec<_> = (0..5)
            .map(|i| ClipFrame {
                jpeg: Bytes::from_static(b"\xff\xd8\xff\xe0 definitely not a jpeg"),
                pts: Duration::from_millis(i * 66),
            })
            .collect();
        let mut out = Cursor::new(Vec::new());
        let err = encode_mp4(&frames, &settings(), &mut out).unwrap_err();
        assert!(matches!(err, EncodeError::NoDecodableFrames), "{err}");
        assert!(out.get_ref().is_empty());
        assert!(matches!(encode_mp4(&[], &settings(), Cursor::new(Vec::new())), Err(EncodeError::NoDecodableFrames)));
    }

    #[test]
    fn frames_of_another_size_are_skipped() {
        let mut frames = Vec::new();
        for i in 0..20usize {
            let (w, h) = if i % 5 == 3 { (320, 240) } else { (W, H) };
            let jpeg = jpeg_of(&synthetic_rgb(i, w, h), w, h, jpeg_encoder::ColorType::Rgb);
            frames.push(ClipFrame { jpeg, pts: Duration::from_millis(i as u64 * 100) });
        }
        let s = EncodeSettings { fps: 10.0, ..settings() };
        let path = tmp_path("sizes");
        let stats = encode_mp4(&frames, &s, std::fs::File::create(&path).unwrap()).unwrap();
        assert_eq!((stats.frames_in, stats.frames_encoded, stats.frames_skipped), (20, 16, 4));
        assert_eq!((stats.width, stats.height), (640, 480));
        assert_eq!(stats.duration, Duration::from_secs(2));
        let probe = ffprobe(&path);
        assert_eq!(f(&probe["streams"][0]["nb_frames"]) as usize, 16);
        ffmpeg_decodes_cleanly(&path);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn odd_sizes_are_cropped_and_pts_must_increase() {
        let (w, h) = (321, 241);
        let mut frames: Vec<_> = (0..10u64)
            .map(|i| ClipFrame {
                jpeg: jpeg_of(&synthetic_rgb(i as usize, w, h), w, h, jpeg_encoder::ColorType::Rgb),
                pts: Duration::from_millis(i * 100),
            })
            .collect();
        // A duplicate and a backwards timestamp are dropped rather than given zero duration.
        frames.insert(5, ClipFrame { pts: frames[4].pts, ..frames[4].clone() });
        frames.insert(8, ClipFrame { pts: Duration::from_millis(50), ..frames[2].clone() });
        let s = EncodeSettings { fps: 10.0, ..settings() };
        let path = tmp_path("odd");
        let stats = encode_mp4(&frames, &s, std::fs::File::create(&path).unwrap()).unwrap();
        assert_eq!((stats.frames_in, stats.frames_encoded, stats.frames_skipped), (12, 10, 2));
        assert_eq!((stats.width, stats.height), (320, 240));
        assert_eq!(stats.duration, Duration::from_secs(1));
        let probe = ffprobe(&path);
        assert_eq!(probe["streams"][0]["width"], 320);
        assert_eq!(probe["streams"][0]["height"], 240);
        ffmpeg_decodes_cleanly(&path);
        std::fs::remove_file(&path).ok();
    }

    /// Colour survives JPEG -> I420 -> H.264 -> (ffmpeg) RGB for YCbCr, grey and CMYK JPEGs.
    #[test]
    fn colours_survive_the_round_trip() {
        let (w, h) = (64, 48);
        let cases: [(&str, [u8; 3], jpeg_encoder::ColorType, Vec<u8>); 3] = [
            ("ycbcr", [200, 60, 40], jpeg_encoder::ColorType::Rgb, [200u8, 60, 40].repeat(w * h)),
            ("luma", [90, 90, 90], jpeg_encoder::ColorType::Luma, vec![90u8; w * h]),
            // CMYK goes through zune's RGB output and our RGB -> I420 path.
            ("cmyk", [0, 0, 0], jpeg_encoder::ColorType::Cmyk, [0u8, 155, 215, 55].repeat(w * h)),
        ];
        for (name, want, color, pixels) in cases {
            // Quality >= 90 makes jpeg-encoder use 4:4:4: zune-jpeg 0.5.15 mis-decodes
            // chroma-subsampled CMYK (rows of black), which cameras never produce anyway.
            let jpeg = jpeg_q(&pixels, w, h, color, 95);
            let want = if name == "cmyk" {
                // Whatever zune makes of this CMYK JPEG as RGB is the reference.
                let mut dec = JpegDecoder::new_with_options(
                    ZCursor::new(&jpeg[..]),
                    DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB),
                );
                let rgb = dec.decode().unwrap();
                [rgb[0], rgb[1], rgb[2]]
            } else {
                want
            };
            let frames: Vec<_> =
                (0..3u64).map(|i| ClipFrame { jpeg: jpeg.clone(), pts: Duration::from_millis(i * 100) }).collect();
            let path = tmp_path(name);
            let s = EncodeSettings { fps: 10.0, ..settings() };
            encode_mp4(&frames, &s, std::fs::File::create(&path).unwrap()).unwrap();
            let rgb = ffmpeg_first_frame_rgb(&path);
            assert_eq!(rgb.len(), w * h * 3);
            let c = &rgb[((h / 2) * w + w / 2) * 3..][..3];
            for k in 0..3 {
                assert!((i32::from(c[k]) - i32::from(want[k])).abs() <= 10, "{name}: got {c:?}, want {want:?}");
            }
            std::fs::remove_file(&path).ok();
        }
    }

    #[test]
    fn keyframes_follow_the_interval() {
        let frames: Vec<_> = (0..40u64)
            .map(|i| ClipFrame {
                jpeg: jpeg_of(&synthetic_rgb(i as usize, 160, 120), 160, 120, jpeg_encoder::ColorType::Rgb),
                pts: Duration::from_millis(i * 100),
            })
            .collect();
        let s = EncodeSettings { fps: 10.0, keyframe_interval: 10, ..settings() };
        let mut out = Cursor::new(Vec::new());
        encode_mp4(&frames, &s, &mut out).unwrap();
        let data = out.into_inner();
        let size = data.len() as u64;
        let mp4 = mp4::Mp4Reader::read_header(Cursor::new(&data), size).unwrap();
        let track = mp4.tracks().get(&TRACK_ID).unwrap();
        let stss = track.trak.mdia.minf.stbl.stss.as_ref().expect("stss");
        assert_eq!(stss.entries, [1, 11, 21, 31]);
        assert_eq!(track.sample_count(), 40);
        assert_eq!(mp4.moov.mvhd.next_track_id, 2);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let frames =
            [ClipFrame { jpeg: jpeg_of(&[0; 16 * 16 * 3], 16, 16, jpeg_encoder::ColorType::Rgb), pts: Duration::ZERO }];
        for s in [
            EncodeSettings { fps: 0.0, ..settings() },
            EncodeSettings { fps: f32::NAN, ..settings() },
            EncodeSettings { bitrate_bps: 0, ..settings() },
        ] {
            assert!(matches!(encode_mp4(&frames, &s, Cursor::new(Vec::new())), Err(EncodeError::InvalidSettings(_))));
        }
    }
}
