//! A small streaming reader for MJPEG-in-AVI (RIFF) files, enough for what ffmpeg writes.
//!
//! No well-kept crate reads AVI video chunks; the RIFF layout is simple and documented
//! (Microsoft "AVI RIFF File Reference"), so this walks it directly without loading the file.

use std::io::{self, Read, Seek, SeekFrom};

#[derive(Debug, thiserror::Error)]
pub enum AviError {
    #[error("not an AVI file (expected RIFF....AVI header)")]
    NotAvi,
    #[error("AVI file has no video stream header (strh 'vids')")]
    NoVideoStream,
    #[error("AVI video codec `{0}` is not MJPEG; convert with `ffmpeg -i IN -c:v mjpeg -q:v 5 OUT.avi`")]
    NotMjpeg(String),
    #[error("AVI file has no 'movi' list")]
    NoMovi,
    #[error("AVI header is malformed: {0}")]
    Malformed(&'static str),
    /// The data ends before the 'movi' list does (a recording cut short), or a chunk claims
    /// more than is left of it (corrupt).
    #[error("the file is truncated or corrupt at byte {offset} ('movi' runs to byte {end}), after {frames} frames")]
    Truncated { offset: u64, end: u64, frames: u64 },
    #[error("reading AVI: {0}")]
    Io(#[from] io::Error),
}

/// Stream properties from the AVI headers.
#[derive(Debug, Clone, PartialEq)]
pub struct AviInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second (dwRate / dwScale of the video stream).
    pub fps: f64,
    /// Frame count from the main header (may be 0 when the writer did not know).
    pub total_frames: u32,
}

/// Reads video frames one chunk at a time.
pub struct AviReader<R> {
    inner: R,
    info: AviInfo,
    /// Absolute offset of the first chunk inside 'movi', and the end of the list.
    movi_start: u64,
    movi_end: u64,
    pos: u64,
    /// The chunk id of the video stream ("00dc" for stream 0).
    video_ids: [[u8; 4]; 2],
    /// Frames read since the start (or the last rewind).
    frames: u64,
}

fn fourcc(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, AviError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(AviError::Malformed("header too short"))
}

impl<R: Read + Seek> AviReader<R> {
    pub fn new(mut inner: R) -> Result<Self, AviError> {
        let mut hdr = [0u8; 12];
        inner.read_exact(&mut hdr).map_err(|_| AviError::NotAvi)?;
        if &hdr[0..4] != b"RIFF" || &hdr[8..12] != b"AVI " {
            return Err(AviError::NotAvi);
        }
        let riff_end = 8 + u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as u64;
        let mut pos = 12u64;
        let mut main: Option<(u32, u32, u32)> = None; // total frames, width, height
        let mut video: Option<(u32, f64)> = None; // stream index, fps
        let mut stream_index = 0u32;
        let mut movi = None;

        // Walk top-level chunks and descend into LIST hdrl/strl; stop at LIST movi.
        let mut stack: Vec<u64> = vec![riff_end];
        while let Some(&end) = stack.last() {
            if pos + 8 > end {
                stack.pop();
                pos = end;
                if stack.is_empty() {
                    break;
                }
                continue;
            }
            inner.seek(SeekFrom::Start(pos))?;
            let mut ch = [0u8; 8];
            if inner.read_exact(&mut ch).is_err() {
                break;
            }
            let size = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]) as u64;
            let body = pos + 8;
            let next = body + size + (size & 1);
            match &ch[0..4] {
                b"LIST" => {
                    let mut kind = [0u8; 4];
                    inner.read_exact(&mut kind)?;
                    match &kind {
                        b"movi" => {
                            movi = Some((body + 4, body + size));
                            break;
                        }
                        b"hdrl" | b"strl" => {
                            if &kind == b"strl" {
                                stream_index += 1;
                            }
                            stack.push(next.min(end));
                            pos = body + 4;
                            continue;
                        }
                        _ => {}
                    }
                }
                b"avih" => {
                    let mut b = vec![0u8; size.min(256) as usize];
                    inner.read_exact(&mut b)?;
                    main = Some((u32_at(&b, 16)?, u32_at(&b, 32)?, u32_at(&b, 36)?));
                }
                b"strh" => {
                    let mut b = vec![0u8; size.min(256) as usize];
                    inner.read_exact(&mut b)?;
                    if b.get(0..4) == Some(b"vids") && video.is_none() {
                        let handler = b.get(4..8).unwrap_or_default();
                        let known = [b"MJPG", b"mjpg", b"AVRn", b"JPEG", b"jpeg", b"\0\0\0\0"];
                        if !known.iter().any(|k| handler == &k[..]) {
                            return Err(AviError::NotMjpeg(fourcc(handler)));
                        }
                        let scale = u32_at(&b, 20)?;
                        let rate = u32_at(&b, 24)?;
                        if scale == 0 || rate == 0 {
                            return Err(AviError::Malformed("video stream has zero rate or scale"));
                        }
                        video = Some((stream_index - 1, rate as f64 / scale as f64));
                    }
                }
                b"strf" => {
                    // BITMAPINFOHEADER: biCompression at 16 tells the codec when strh's handler is blank.
                    let mut b = vec![0u8; size.min(64) as usize];
                    inner.read_exact(&mut b)?;
                    if let (Some((idx, _)), Some(c)) = (video, b.get(16..20)) {
                        if idx == stream_index - 1 && !matches!(c, b"MJPG" | b"mjpg" | b"JPEG" | b"jpeg" | b"AVRn") {
                            return Err(AviError::NotMjpeg(fourcc(c)));
                        }
                    }
                }
                _ => {}
            }
            pos = next;
        }
        let (idx, fps) = video.ok_or(AviError::NoVideoStream)?;
        let (total, width, height) = main.ok_or(AviError::Malformed("no avih header"))?;
        let (movi_start, movi_end) = movi.ok_or(AviError::NoMovi)?;
        let id = |suffix: &[u8; 2]| {
            let d = format!("{:02}", idx);
            let d = d.as_bytes();
            [d[0], d[1], suffix[0], suffix[1]]
        };
        Ok(AviReader {
            inner,
            info: AviInfo { width, height, fps, total_frames: total },
            movi_start,
            movi_end,
            pos: movi_start,
            video_ids: [id(b"dc"), id(b"db")],
            frames: 0,
        })
    }

    pub fn info(&self) -> &AviInfo {
        &self.info
    }

    /// Back to the first frame.
    pub fn rewind(&mut self) {
        self.pos = self.movi_start;
        self.frames = 0;
    }

    fn truncated(&self, offset: u64) -> AviError {
        AviError::Truncated { offset, end: self.movi_end, frames: self.frames }
    }

    /// The next video frame's bytes, or `None` at the end. Other chunks (audio, index) are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, AviError> {
        loop {
            if self.pos + 8 > self.movi_end {
                return Ok(None);
            }
            self.inner.seek(SeekFrom::Start(self.pos))?;
            let mut ch = [0u8; 8];
            match self.inner.read_exact(&mut ch) {
                Ok(()) => {}
                // A recording cut short: said, with where and how much was read, not taken for its end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(self.truncated(self.pos)),
                Err(e) => return Err(e.into()),
            }
            let size = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]) as u64;
            let body = self.pos + 8;
            let id = [ch[0], ch[1], ch[2], ch[3]];
            if &id == b"LIST" {
                // 'rec ' lists group chunks; step inside.
                self.pos = body + 4;
                continue;
            }
            if body + size > self.movi_end {
                return Err(self.truncated(self.pos));
            }
            let at = self.pos;
            self.pos = body + size + (size & 1);
            if self.video_ids.contains(&id) {
                if size > 64 * 1024 * 1024 {
                    return Err(AviError::Malformed("video chunk larger than 64 MiB"));
                }
                let mut buf = vec![0u8; size as usize];
                match self.inner.read_exact(&mut buf) {
                    Ok(()) => {
                        self.frames += 1;
                        return Ok(Some(buf));
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(self.truncated(at)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}
