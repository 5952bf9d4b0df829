"""Reading batches ahead in a background thread (``train.<profile>.<dataset>.prefetch: N``).

:func:`prefetch` runs an iterator of host batches and their transfer to the device in a thread of its
own, at most ``depth`` batches ahead of the consumer, so the training step never waits on the
memory-mapped store. The thread consumes the iterator in its order, and the iterator draws every
random number it needs from its own generators (:mod:`mmbalance.engine.batches`), so the batches and
their order are exactly those of the synchronous path; the consumer's random streams (dropout,
mixup, the global generators) are never touched by the thread.

On CUDA the thread copies each batch from pinned memory with ``non_blocking`` on a side stream and
records an event; the consumer makes its stream wait for that event (the copy then overlaps the
previous step's kernels) and marks the tensors as used by its stream (``record_stream``), so the
caching allocator does not reuse their memory too early. On the CPU the thread reads ahead only.

Closing the consumer early (a ``break``; LFM-LB reads the first batches of a split) stops the thread
and closes the iterator; an exception in the thread is raised in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")
POLL_SECONDS = 0.1
"""How often a producer blocked on a full queue checks whether the consumer has gone."""


class _End:
    """The producer's last item: the iterator is exhausted (``error`` None) or raised ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetch(
    items: Iterator[T],
    depth: int,
    move: Callable[[T], T],
    tensors: Callable[[T], Iterable[torch.Tensor]],
    device: torch.device,
) -> Iterator[T]:
    """Yield ``move(item)`` for every item of ``items``, prepared up to ``depth`` items ahead by a
    background thread; ``tensors(moved)`` lists the device tensors of a moved item (for CUDA)."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if stream is None:
                    moved, event = move(item), None
                else:
                    with torch.cuda.stream(stream):
                        moved, event = move(item), torch.cuda.Event()
                        event.record(stream)
                if not put((moved, event)):
                    return
            put(_End())
        except BaseException as error:  # handed to the consumer, which raises it
            put(_End(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="mmbalance-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = ready.get()
            if isinstance(got, _End):
                if got.error is not None:
                    raise got.error
                return
            moved, event = got
            if event is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                for tensor in tensors(moved):
                    tensor.record_stream(current)
            yield moved
    finally:
        stop.set()
        thread.join()
