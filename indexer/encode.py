"""The encode stage: batches of preprocessed images through the model, on CPU cores the
decoders do not starve, and back in the order they went in.

On a CPU, one forward pass spread over all cores (torch's intra-op threads) wastes time
at every operator's barrier, and far more when decode threads take a core away in the
middle of an operator. Independent single-threaded forward passes, one per core
(``streams``), keep every core busy with useful work, and the operating system
interleaves them with decoding without anyone waiting on a barrier. Each batch is split
across the streams (data parallel), so the last batch of a run, or a lone batch, still
keeps every core busy instead of one stream finishing it while the others idle (with
whole batches per stream, 3 batches on 2 streams took as long as 4). The decode threads
get one intra-op thread each too: torch's small per-image transforms (``ToTensor``,
``Normalize``) otherwise start a thread team per call and cost ten times more CPU.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder, stack

Batch = list[Any]  # list[indexer.prepare.Prepared]
Done = tuple[Batch, "npt.NDArray[np.float32] | None"]


def single_thread_torch() -> None:
    """Thread initializer: this thread's torch operators run on this thread alone (when
    the run uses torch at all: the ONNX engine's runs never import it)."""
    _set_torch_threads(1)


def _set_torch_threads(count: int) -> int:
    """Set torch's thread count for the calling thread if torch is loaded; the count it
    had (0: torch is not loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    saved = int(torch.get_num_threads())
    torch.set_num_threads(count)
    return saved


def plan_streams(encoder: Encoder, cores: int | None = None) -> tuple[int, int]:
    """``(streams, threads per stream)`` for ``encoder``: one single-threaded stream per
    core on a CPU (at most 2; more cores go to each stream's threads), one stream on an
    accelerator, whose work is queued on the device anyway."""
    cores = cores or os.cpu_count() or 1
    device = getattr(encoder, "device", None)
    if device is None or getattr(device, "type", str(device)) != "cpu":
        return 1, 0  # 0: leave torch's threads as they are
    streams = min(2, cores)
    return streams, max(1, cores // streams)


class EncodeStage:
    """Encodes submitted batches on ``streams`` threads, each batch split across them;
    finished batches come back oldest first, so the catalog is written in walk order."""

    def __init__(self, encoder: Encoder, streams: int | None = None, threads: int | None = None) -> None:
        planned = plan_streams(encoder)
        self.encoder = encoder
        self.streams = streams or planned[0]
        self.threads = planned[1] if threads is None else threads
        self._inflight: deque[tuple[Batch, list[Future[Any]]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._saved_threads = 0

    def __enter__(self) -> EncodeStage:
        torch = sys.modules.get("torch")
        self._saved_threads = int(torch.get_num_threads()) if torch is not None else 0
        self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="encode",
                                        initializer=self._init_thread)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._pool is not None
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Threads started later (a server's request threads) get torch's usual count back.
        if self._saved_threads:
            _set_torch_threads(self._saved_threads)

    def _init_thread(self) -> None:
        if self.threads:
            _set_torch_threads(self.threads)

    def submit(self, batch: Batch) -> list[Done]:
        """Queue ``batch``; return the batches finished meanwhile (blocking only while
        two batches are already queued: one being encoded, the next one waiting, so
        a stream that finishes its share early always finds work)."""
        tensors = [p.pixels for p in batch if p.pixels is not None]
        assert self._pool is not None
        futures = [self._pool.submit(self._encode, part) for part in _split(tensors, self.streams)]
        self._inflight.append((batch, futures))
        done: list[Done] = []
        limit = max(2, self.streams)
        while self._inflight and (len(self._inflight) > limit
                                  or all(f.done() for f in self._inflight[0][1])):
            done.append(self._pop())
        return done

    def drain(self) -> list[Done]:
        """Every batch still in flight, oldest first."""
        return [self._pop() for _ in range(len(self._inflight))]

    def _pop(self) -> Done:
        batch, futures = self._inflight.popleft()
        if not futures:
            return batch, None
        return batch, np.concatenate([f.result() for f in futures])

    def _encode(self, pixels: list[Any]) -> npt.NDArray[np.float32]:
        return self.encoder.encode_pixels(stack(pixels))


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in at most ``parts`` contiguous runs of near-equal length, in order."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return [run for run in out if run]
