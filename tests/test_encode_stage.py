"""The indexer's encode stage: batches come back in the order they went in, whatever
order the streams finish them in, and torch's thread count is left as it was."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clipfind.indexer.encode import EncodeStage, plan_streams


@dataclass
class Item:
    pixels: Any


class SlowFirstEncoder:
    """Encodes a batch as its first pixel value; the first batch is the slowest."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.calls = 0

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.3)
        return pixels[:, :1].numpy().astype(np.float32)


def test_stream_plan_by_device():
    assert plan_streams(object()) == (1, 0)  # no device (fake encoders): leave torch alone
    assert plan_streams(SlowFirstEncoder(), cores=2) == (2, 1)
    assert plan_streams(SlowFirstEncoder(), cores=16) == (2, 8)

    class Gpu:
        device = torch.device("cuda")

    assert plan_streams(Gpu(), cores=16) == (1, 0)


def test_batches_come_back_in_order_and_threads_are_restored():
    before = torch.get_num_threads()
    batches = [[Item(torch.full((2,), float(b * 10 + i))) for i in range(3)] for b in range(5)]
    batches.insert(2, [Item(None), Item(None)])  # nothing to encode (moved/touched files)
    out = []
    with EncodeStage(SlowFirstEncoder(), streams=2, threads=1) as stage:
        for batch in batches:
            out.extend(stage.submit(batch))
            assert len(stage._inflight) <= 2
        out.extend(stage.drain())
    assert [b for b, _ in out] == batches
    firsts = [None if v is None else v[:, 0].tolist() for _, v in out]
    assert firsts == [[0, 1, 2], [10, 11, 12], None, [20, 21, 22], [30, 31, 32], [40, 41, 42]]
    assert torch.get_num_threads() == before


class RecordingEncoder:
    """Encodes each row as its value, noting which thread encoded how many rows."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        time.sleep(0.2)  # long enough that both streams are busy at once
        with self._lock:
            self.calls.append((threading.current_thread().name, len(pixels)))
        return pixels[:, :1].numpy().astype(np.float32)


def test_a_lone_batch_is_split_across_the_streams_and_comes_back_whole():
    # The last (or only) batch of a run must keep every core busy, not one stream.
    encoder = RecordingEncoder()
    batch = [Item(torch.full((2,), float(i))) for i in range(5)]
    with EncodeStage(encoder, streams=2, threads=1) as stage:
        out = stage.submit(batch) + stage.drain()
    assert len(out) == 1 and out[0][0] == batch
    assert out[0][1][:, 0].tolist() == [0, 1, 2, 3, 4]
    assert sorted(n for _, n in encoder.calls) == [2, 3]
    assert len({name for name, _ in encoder.calls}) == 2  # two streams, at the same time
