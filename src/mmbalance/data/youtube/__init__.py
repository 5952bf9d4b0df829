"""Shared preparation of the YouTube-clip datasets (Kinetics-Sounds, VGGSound): datasets.md §3.2-3.3, §4.

Both datasets are lists of 10-s YouTube segments ("clips") that the user obtains themselves: no
package of the media exists (Kinetics-Sounds: GeWu-Lab/OGM-GE_CVPR2022#14 "use youtube-dl";
VGGSound: the VGG-hosted copy is gone, hche11/VGGSound#12).
:func:`~mmbalance.data.youtube.prepare.prepare_clips` turns the split lists and a folder of clips into
the raw folder of the dataset contract (:mod:`mmbalance.data.datasets._base`)::

    Video/<clip_id>.<ext>      the clip: a link to the user's file (``link``: symlink, hardlink or copy)
    AudioWAV/<clip_id>.wav     its first audio track, mono PCM_16 at ``audio_rate`` (PyAV/libswresample)
    splits/<split>.csv         clip_id,label,youtube_id,start,audio,video (the clips found, list order)
    missing/<split>.tsv        clip_id, youtube_id, reason (every listed clip that is not in splits/)
    short.tsv                  split, clip_id, audio_seconds, video_seconds (clips shorter than short_seconds)
    classes.txt                one class name per line
    manifest.json              written last: settings, counts, listed/missing/unreadable/short, sha256

**Sources** (``source``). ``folder``: the clips are already in ``clips_dir`` (searched recursively;
``.mp4``, ``.mkv`` or ``.webm``). ``yt-dlp``: each listed clip not yet in ``clips_dir`` is fetched
with ``yt-dlp --download-sections "*start-end"`` (needs ffmpeg), one request at a time with
``request_sleep`` seconds between requests, into ``clips_dir/<clip_id>.mp4`` (written under
``clips_dir/.incoming/`` and renamed when complete and decodable). A re-run skips clips present;
videos YouTube reports as gone are recorded in ``clips_dir/unavailable.tsv`` and not asked for again
(``retry_unavailable`` asks again); other failures (network, rate limits) are retried on the next run,
and ``max_consecutive_failures`` failures in a row stop the run (YouTube throttling an address).

**Names accepted in the folder**: the list's clip id (each dataset module adds its own
alternatives, e.g. VGGSound's unpadded start); and, when a YouTube id occurs once in the whole list,
any single file named ``<youtube id>.<ext>`` or ``<youtube id>_<anything>.<ext>`` (CVDF's
``<id>_<start:06d>_<end:06d>``, a plain ``<id>``). Files must be the 10-s segments, not whole videos.

**Missing clips are counted, never dropped silently**: deleted YouTube videos are a large, real
effect (VGGSound ~20 % by 2021, hche11/VGGSound#12; Kinetics cvdfoundation/kinetics-dataset#28).
Per split the counts of listed, found, missing and unreadable clips are logged and stored in the raw
manifest, the ids with a reason in ``missing/<split>.tsv``. A split whose missing share exceeds
``max_missing_fraction`` stops the run (default 1.0: never). A clip that is present but cannot be
decoded (no audio or video stream, a broken file) stops the run naming it (``on_unreadable:
error``), or is counted with the missing ones (``count``).

**Short clips are counted too**: a clip whose audio or video track lasts less than ``short_seconds``
(9.5 s: the documented clips last 10 s, a downloaded section a few milliseconds less) is tiled to
the front-end's length at extraction, which a 2-s clip or a 0.01-s audio track makes a different
input. Per split the count is stored in the raw manifest (``short``), the clips with both
durations in ``short.tsv``, and a warning gives the counts; ``on_short: error`` stops the run
instead.

**Audio.** :mod:`mmbalance.data.audio` reads WAV files (soundfile), and the reference pipelines
extract a WAV per clip first (VGGSound ``preprocess_audio.py``, OGM-GE ``mp4_to_wav.py``: ffmpeg
``-ac 1 -ar 16000``), so ``prepare`` writes one: the clip's first audio stream decoded by PyAV,
down-mixed and resampled once by libswresample (the library behind ffmpeg's ``-ac 1 -ar``) to
``audio_rate`` Hz (0 = the clip's own rate; needed for a front-end above 16 kHz such as
``amss_ks``'s 35.4 kHz), 16-bit. A WAV newer than its clip is kept on a re-run.

**Validation split.** Neither dataset ships one; ``val_fraction`` of each class of the training
list goes to ``val`` by :func:`~mmbalance.data.youtube.clips.carve_validation` (seeded, stratified,
decided on the list before any clip is looked for, so it does not depend on which clips a user could
download).

The package splits by job: :mod:`~mmbalance.data.youtube.clips` (the settings, the listed clips, pinned
list files, the validation split), :mod:`~mmbalance.data.youtube.folder` (finding a clip's file),
:mod:`~mmbalance.data.youtube.fetch` (yt-dlp), :mod:`~mmbalance.data.youtube.transcode` (probing,
WAV extraction, durations) and :mod:`~mmbalance.data.youtube.prepare` (the raw folder and its manifest).
"""
