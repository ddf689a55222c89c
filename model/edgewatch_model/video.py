"""Video reading and writing, frame sampling and preprocessing as the detector does them.

The detector (src/source/, src/infer.rs) numbers frames from 0, gives frame i the
media time i / fps, samples it with `Sampler` (below, ported from
src/source/mod.rs), decodes it to RGB, resizes the whole frame to W x H with a
bilinear convolution (fast_image_resize, Pillow's algorithm: no crop, no aspect
ratio kept) and normalises it as (pixel / 255 - mean) / std into NCHW.

Here OpenCV decodes (any container and codec its bundled FFmpeg reads) and Pillow
resizes (BILINEAR, which is the same convolution); the remaining difference to
the detector is JPEG decoder rounding.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import cv2
import numpy as np
from PIL import Image

VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


class ClipError(Exception):
    """A clip that cannot be read, or that is too short for one window."""


class Sampler:
    """Port of the detector's `Sampler`: takes a frame every 1/sample_fps s of media
    time (1 ms tolerance), restarting the grid after a gap."""

    def __init__(self, sample_fps: float):
        self.interval = int(round(1e9 / sample_fps))  # nanoseconds, like Rust's Duration
        self.next = 0

    def take(self, pts_ns: int) -> bool:
        if pts_ns + 1_000_000 < self.next:
            return False
        if pts_ns > self.next + self.interval:
            self.next = pts_ns + self.interval
        else:
            self.next = self.next + self.interval
        return True


def pts_ns(index: int, fps: float) -> int:
    """Media time of frame `index`, as the detector's file source computes it."""
    return int(round(index * 1e9 / fps))


class VideoReader:
    """Iterates (index, pts_ns, RGB uint8 HxWx3) over a video's frames."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise ClipError(f"{path}: no such file")
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise ClipError(f"{path}: cannot be opened as a video (OpenCV/FFmpeg could not read it)")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (fps > 0 and np.isfinite(fps)):
            self.cap.release()
            raise ClipError(f"{path}: the video has no usable frame rate (got {fps})")
        self.fps = fps
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def __iter__(self):
        i = 0
        try:
            while True:
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    break
                yield i, pts_ns(i, self.fps), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                i += 1
        finally:
            self.cap.release()
        if i == 0:
            raise ClipError(f"{self.path}: no frame could be decoded")


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Whole-frame bilinear (convolution) resize to width x height, like the detector."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return np.ascontiguousarray(rgb)
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def sampled_frames(path: str, sample_fps: float, width: int, height: int,
                   with_pts: bool = False):
    """The frames the detector would feed the backbone, resized: uint8 [N,H,W,3]
    (and their media times in seconds when `with_pts`)."""
    reader = VideoReader(path)
    sampler = Sampler(sample_fps)
    frames, times = [], []
    for _i, pts, rgb in reader:
        if sampler.take(pts):
            frames.append(resize_rgb(rgb, width, height))
            times.append(pts / 1e9)
    arr = np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)
    return (arr, np.array(times)) if with_pts else arr


def normalise_nchw(frames_u8: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [N,H,W,3] -> float32 [N,3,H,W], computed like src/infer.rs:
    pixel * (1 / (255 * std)) + (-mean / std), in float32."""
    scale = (np.float32(1.0) / (np.float32(255.0) * np.asarray(std, np.float32))).astype(np.float32)
    offset = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
    x = frames_u8.astype(np.float32) * scale + offset
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def write_video(path: str, frames, fps: float, quality: int = 85, ffmpeg_q: bool = False) -> None:
    """Writes RGB uint8 frames as MJPEG in AVI.

    With `ffmpeg_q`, `quality` is ffmpeg's `-q:v` (2 = best .. 31) and ffmpeg is used
    when it is installed (the AVI layout the detector's reader was written against);
    otherwise OpenCV's built-in MJPEG writer with JPEG quality `quality` (0..100)."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write")
    h, w = frames[0].shape[:2]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if ffmpeg_q:
        ff = shutil.which("ffmpeg")
        if ff:
            cmd = [ff, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                   "-r", repr(float(fps)), "-i", "-", "-c:v", "mjpeg", "-q:v", str(quality),
                   "-pix_fmt", "yuvj420p", "-an", path]
            proc = subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames),
                                  capture_output=True)
            if proc.returncode != 0:
                raise RuntimeError(f"ffmpeg failed writing {path}: {proc.stderr.decode(errors='replace')}")
            return
        quality = int(np.clip(100 - 3 * quality, 10, 100))
    writer = cv2.VideoWriter(path, cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter.fourcc(*"MJPG"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
    for f in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    writer.release()
