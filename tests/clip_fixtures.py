"""Tiny real YouTube-style clips (H.264 + AAC in MP4) and a stand-in ``yt-dlp`` for the KS/VGGSound tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np

FAKE_YTDLP = r'''#!{python}
"""Stands in for yt-dlp: copies a fixture clip to the -o template, logs every call."""
import shutil, sys
from pathlib import Path
args = sys.argv[1:]
url = args[-1]
ytid = url.split("v=", 1)[1]
with open({log!r}, "a") as log:
    log.write(ytid + " " + args[args.index("--download-sections") + 1] + "\n")
if ytid in {gone!r}:
    sys.stderr.write("ERROR: [youtube] " + ytid + ": Video unavailable\n")
    sys.exit(1)
if ytid in {flaky!r}:
    sys.stderr.write("ERROR: [youtube] " + ytid + ": HTTP Error 429: Too Many Requests\n")
    sys.exit(1)
out = args[args.index("-o") + 1].replace("%(ext)s", "mp4")
shutil.copyfile({clip!r}, out)
'''


def write_clip(
    path: Path,
    seconds: float = 3.0,
    fps: int = 4,
    size: int = 32,
    seed: int = 0,
    audio_seconds: float | None = None,
) -> Path:
    """An MP4 with an H.264 video stream and a stereo 44.1 kHz AAC audio stream (as long as the video
    unless ``audio_seconds`` says otherwise)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.height = video.width = size
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        audio = container.add_stream("aac", rate=44100, layout="stereo")
        for k in range(round(seconds * fps)):
            pixels = np.full((size, size, 3), (40 * k + 20 * seed) % 256, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(video.encode(None))
        audio_length = seconds if audio_seconds is None else audio_seconds
        samples = (0.2 * rng.standard_normal((2, round(audio_length * 44100)))).astype(np.float32)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="stereo"
            )
            frame.sample_rate = 44100
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def fake_tools(
    folder: Path, clip: Path, gone: frozenset[str] = frozenset(), flaky: frozenset[str] = frozenset()
) -> tuple[dict, Path]:
    """A fake ``yt-dlp`` and ``ffmpeg`` in ``folder``: the config keys naming them, and the call log."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.log"
    ytdlp = folder / "yt-dlp"
    ytdlp.write_text(
        FAKE_YTDLP.format(
            python=sys.executable, log=str(log), gone=sorted(gone), flaky=sorted(flaky), clip=str(clip)
        )
    )
    ffmpeg = folder / "ffmpeg"
    ffmpeg.write_text("#!/bin/sh\nexit 0\n")
    for tool in (ytdlp, ffmpeg):
        os.chmod(tool, 0o755)
    return {"ytdlp": str(ytdlp), "ffmpeg": str(ffmpeg), "request_sleep": 0.0}, log
