"""Items per second of the training data path against an on-the-fly loader.

- ``store``: mmbalance's path — batches gathered from the memory-mapped feature store
  (``SplitBatches``), already spectrograms and resized uint8 frames.
- ``on_the_fly``: the official code bases' kind of loader — per item and per epoch, read
  the WAV, tile it and run the STFT with librosa (the ``pmr`` recipe), and decode the
  video's frames (PyAV at the configured rate, resized).
Both produce the same tensors for the training split of the embedded dataset
(``mmbalance generate`` and ``mmbalance extract`` must have run with these params).
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import write_results
from mmbalance.config import feature_config, load_params
from mmbalance.data.store import open_store
from mmbalance.data.video import read_frames
from mmbalance.engine.batches import SplitBatches
from mmbalance.paths import feature_dir, raw_dir
from mmbalance.registry import DATASETS, FRONTENDS


def items_per_second(fn, items: int) -> float:
    start = time.perf_counter()
    fn()
    return items / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dataset", default="synthav")
    parser.add_argument("--items", type=int, default=200, help="items for the on-the-fly loader")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    params = load_params(args.params)
    feats = feature_config(params, args.dataset)
    split = open_store(feature_dir(params, args.dataset)).split("train")
    batches = SplitBatches(split.arrays, split.labels, args.batch_size, torch.device("cpu"), shuffle=True)

    def store_epoch() -> None:
        for _ in batches.epoch(0):
            pass

    items = DATASETS.get(args.dataset)().items(raw_dir(params, args.dataset), "train")[: args.items]
    frontend = FRONTENDS.get(feats["audio"]["frontend"])(feats["audio"]["seconds"])
    video = feats["video"]

    def on_the_fly() -> None:
        for item in items:
            torch.from_numpy(frontend(item.paths["audio"]))
            torch.from_numpy(read_frames(item.paths["video"], video["frames"], video["rate"], video["size"]))

    store_epoch()  # warm the page cache, as every epoch after the first finds it
    store_rate = items_per_second(store_epoch, len(split))
    fly_rate = items_per_second(on_the_fly, len(items))
    rows = [
        {"loader": "store (mmbalance)", "items_per_s": f"{store_rate:.0f}"},
        {"loader": "on-the-fly librosa + PyAV", "items_per_s": f"{fly_rate:.0f}"},
    ]
    rows[0]["speedup"] = f"{store_rate / fly_rate:.0f}x"
    rows[1]["speedup"] = "1x"
    note = (
        f"Training split of `{args.dataset}` (front-end `{feats['audio']['frontend']}`, "
        f"{video['frames']} frames of {video['size']}px), one process, batch {args.batch_size}."
    )
    write_results("data_path", rows, ["loader", "items_per_s", "speedup"], note)


if __name__ == "__main__":
    main()
