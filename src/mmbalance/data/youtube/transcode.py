"""A clip's streams: whether it opens, its first audio track as a WAV, how long its video lasts."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf

from mmbalance.data.video import open_container
from mmbalance.errors import DataError
from mmbalance.io import atomic_path


def probe(path: Path) -> str:
    """ "" when ``path`` opens with a video and an audio stream, else what is wrong (naming it)."""
    try:
        with open_container(path) as container:
            if not container.streams.video:
                return f"{path}: no video stream"
            if not container.streams.audio:
                return f"{path}: no audio stream"
    except DataError as exc:
        return str(exc)
    return ""


def write_wav(src: Path, dest: Path, rate: int) -> None:
    """Decode the first audio stream of ``src`` to mono PCM_16 at ``rate`` Hz (0: the stream's rate)
    into ``dest`` (atomically); :class:`DataError` naming ``src`` if it cannot be opened, has no such
    stream or the stream cannot be decoded."""
    chunks = []
    container = open_container(src)
    try:
        with container:
            if not container.streams.video:
                raise DataError(f"{src}: no video stream")
            if not container.streams.audio:
                raise DataError(f"{src}: no audio stream")
            stream = container.streams.audio[0]
            rate = rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{src}: cannot decode audio ({exc})") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if samples.size == 0:
        raise DataError(f"{src}: the audio stream holds no samples")
    with atomic_path(dest) as tmp:
        sf.write(tmp, samples, rate, subtype="PCM_16", format="WAV")


def video_seconds(path: Path) -> float:
    """How long the first video stream of ``path`` lasts, from the container's index (no decoding):
    the stream's duration, else the container's, else the end of its last packet."""
    with open_container(path) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
        ends = [
            (packet.pts + (packet.duration or 0)) * packet.time_base
            for packet in container.demux(stream)
            if packet.pts is not None
        ]
        return float(max(ends, default=0))
