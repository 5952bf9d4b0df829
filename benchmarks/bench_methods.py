"""Step time of every registered method relative to Concat, on the embedded profile's model.

One ``training_step`` (forward, the method's losses, backward, its gradient surgery and the
optimiser step) on a fixed random batch shaped like the embedded feature store
(audio 257×299 float16, video 3×3×32×32 uint8), one CPU thread unless ``--threads``.
Methods with extra forward/backward passes (see the README's method table) show it here.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import time_calls, write_results
from mmbalance.config import load_params, method_options, train_config
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.registry import METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    preset = train_config(params, "synthav")
    spec = ModelSpec({"audio": "spectrogram", "video": "frames"}, preset["encoders"], 6)
    gen = torch.Generator().manual_seed(0)
    batch = Batch(
        inputs={
            "audio": torch.randn(args.batch_size, 257, 299, generator=gen).half(),
            "video": torch.randint(0, 256, (args.batch_size, 3, 3, 32, 32), generator=gen, dtype=torch.uint8),
        },
        labels=torch.arange(args.batch_size) % 6,
        index=torch.arange(args.batch_size),
    )
    timings = {}
    for name in METHODS.names():
        torch.manual_seed(0)
        method = METHODS.get(name)(method_options(params, name), spec)
        model = method.build()
        optimizer = build_optimizer(method.param_groups(model), preset["optimizer"])
        ctx = Context(model, optimizer, 0, 1, 0, torch.device("cpu"), method.modalities, 6)
        model.train()
        timings[name] = time_calls(lambda m=method, c=ctx: m.training_step(batch, c), args.repeats)
    base = timings["concat"]
    rows = [
        {"method": n, "ms_per_step": f"{t * 1000:.1f}", "relative_to_concat": f"{t / base:.2f}"}
        for n, t in sorted(timings.items(), key=lambda kv: kv[1])
    ]
    note = (
        f"Median time of one training step (batch {args.batch_size}, {args.threads} thread(s)), "
        "embedded-profile encoders from params.yaml."
    )
    write_results("method_step_time", rows, ["method", "ms_per_step", "relative_to_concat"], note)


if __name__ == "__main__":
    main()
