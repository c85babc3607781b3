"""What Ray's workers run for ``clipfind index --ray``: reading + decoding files (a task
per chunk, beside GPU actors) and encoding them (an actor holding the model, which on a
CPU reads its files too). Plain Python: nothing here imports Ray, so it is tested and
read like the local stages, and :mod:`clipfind.indexer.ray_pipeline` wraps it with
``ray.remote``."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clipfind.errors import ImageDecodeError
from clipfind.imageio import ImageInfo, content_hash, read_bytes
from clipfind.indexer.prepare import decode_pixels
from clipfind.indexer.walk import FileEntry

# One file as a worker saw it: its content hash (None: it could not be read), the row of
# its pixels in the chunk's array (None: not decoded), its image facts, and why it was
# skipped (None: it was not).
Row = tuple[str | None, int | None, ImageInfo | None, str | None]


def read_chunk(
    entries: Sequence[FileEntry],
    known: Sequence[str | None],
    moved: frozenset[str],
    transform: Callable[[Any], Any],
    target_size: int,
    max_pixels: int,
    threads: int = 1,
) -> tuple[list[Row], npt.NDArray[np.float32]]:
    """Read, hash, decode and preprocess ``entries`` on a worker (on ``threads`` threads):
    one :data:`Row` each, and the decoded pixels stacked in one array. A file whose
    content is its catalog row's (``known``, per entry) or a missing item's (``moved``) is
    hashed, not decoded: the driver keeps the vector it has (moved, touched, duplicate).
    A file with the content of an earlier one in the chunk shares its row: decoded once."""

    def one(pair: tuple[FileEntry, str | None]) -> tuple[str | None, Any, ImageInfo | None, str | None]:
        entry, old_hash = pair
        try:
            data = read_bytes(Path(entry.path))
        except ImageDecodeError as exc:  # a node without the shared folder says so
            return None, None, None, (
                f"{exc} (on Ray node {socket.gethostname()}: "
                "every node must see the files at the same path)"
            )
        digest = content_hash(data)
        if digest == old_hash or digest in moved:
            return digest, None, None, None
        tensor, info, reason = decode_pixels(data, entry.path, transform, target_size, max_pixels)
        return digest, tensor, info, reason

    pairs = list(zip(entries, known, strict=True))
    if threads > 1 and len(pairs) > 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
            read = list(pool.map(one, pairs))
    else:
        read = [one(pair) for pair in pairs]
    rows: list[Row] = []
    pixels: list[Any] = []
    first: dict[str, Row] = {}  # content hash -> the row of its first decoded file
    for digest, tensor, info, reason in read:
        if tensor is None or digest is None:
            rows.append((digest, None, info, reason))
        elif digest in first:
            rows.append(first[digest])
        else:
            row: Row = (digest, len(pixels), info, None)
            first[digest] = row
            rows.append(row)
            pixels.append(np.asarray(tensor, dtype=np.float32))
    stacked = np.stack(pixels) if pixels else np.zeros((0,), np.float32)
    return rows, stacked


def warm_up(torch_free: bool) -> None:
    """Import what :func:`read_chunk` needs in a worker before the first chunk arrives:
    the model's torch transforms, or their replay (``torch_free``: clipfind.pixels)."""
    if torch_free:
        import clipfind.pixels  # noqa: F401
    else:
        import open_clip.transform  # noqa: F401


class EncodeWorker:
    """One copy of the model on a Ray worker, loaded as a local run loads it
    (:meth:`ClipEncoder.from_settings`, the fast loader): fp16 on a GPU, fp32 on a CPU
    with ``threads`` torch threads, or the node's ready ONNX export without torch, as a
    local run on a CPU. Vectors come back as float32, like the local path's."""

    def __init__(self, settings: Any, spec: str, threads: int) -> None:
        from clipfind.encoder import ClipEncoder

        self.encoder = ClipEncoder.from_settings(settings, spec)
        self.threads = max(1, threads)
        if threads and not self.encoder.torch_free_images:
            import torch

            torch.set_num_threads(threads)
        self.encoder.ready_images()  # now, not in the first batch

    def pid(self) -> int:
        return os.getpid()

    def encode(self, pixels: npt.NDArray[np.float32], rows: list[int]) -> npt.NDArray[np.float32]:
        """Encode rows ``rows`` of a chunk's pixel array (fetched from the object store)."""
        batch = np.ascontiguousarray(pixels[rows])
        return np.asarray(self.encoder.encode_pixels(batch), dtype=np.float32)

    def read_encode(
        self,
        entries: Sequence[FileEntry],
        known: Sequence[str | None],
        moved: frozenset[str],
        max_pixels: int,
    ) -> tuple[list[Row], npt.NDArray[np.float32]]:
        """:func:`read_chunk` and encode in this process (a CPU node: the pixels never
        leave it): the rows, and the vectors of the decoded ones, row by row."""
        rows, pixels = read_chunk(
            entries, known, moved, self.encoder.preprocess, self.encoder.image_size, max_pixels, self.threads
        )
        if not len(pixels):
            return rows, np.zeros((0, 0), np.float32)
        return rows, np.asarray(self.encoder.encode_pixels(pixels), dtype=np.float32)
