"""The encode actors of ``clipfind index --ray`` (:mod:`clipfind.indexer.ray_pipeline`):
how many, where, and which gets the next batch. ``ray`` is passed in: nothing here
imports it at module level."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from clipfind.config import Settings
from clipfind.encoding import Encoder
from clipfind.errors import ClusterError
from clipfind.indexer.ray_work import EncodeWorker

RETRIES = 4  # a worker process or node lost mid-run: tasks re-run, actors restart this often
_MIN_PART = 4  # images: a CPU batch is split across actors down to parts this small
_CPU_PART = 8  # files: a CPU actor reads + encodes at most this many per call (or two a thread)
# CPU actors read their own files (False: read tasks, as beside GPU actors; the tests
# run that path on their CPU cluster this way)
FUSED_ON_CPU = True


class EncodePool:
    """Encode actors: one per GPU where the cluster has GPUs (fp16 there), else per node
    up to two streams sharing its cores, as :func:`plan_streams` does locally.

    On GPUs, read tasks decode on the CPUs the cluster leaves them and the pixels travel
    to the GPU actors through Ray's object store. On CPUs (``fused``), each actor reads,
    decodes and encodes its own part of a batch (:meth:`EncodeWorker.read_encode`): the
    pixels never leave its process, and no reader process starts beside the actors that
    already fill the cores (measured on one node: docs/performance.md)."""

    def __init__(self, ray: Any, settings: Settings, encoder: Encoder) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        worker = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(EncodeWorker)
        total = ray.cluster_resources()
        gpus = int(total.get("GPU", 0)) if not settings.device.startswith("cpu") else 0
        self.gpu = gpus > 0
        self.actors: list[Any] = []
        threads = 1  # the most threads a CPU actor decodes and encodes on
        if self.gpu:  # Ray shows each actor its own GPU as cuda:0; ClipEncoder loads fp16 there.
            # No CPU reserved: a node with as many GPUs as cores would leave none to the readers.
            on_gpu = Settings(**{**settings.model_dump(), "device": "cuda"})
            self.actors = [
                worker.options(num_gpus=1, num_cpus=0).remote(on_gpu, encoder.spec, 0) for _ in range(gpus)
            ]
        else:
            cpu_settings = Settings(**{**settings.model_dump(), "device": "cpu"})
            for node in ray.nodes():
                cores = int(node.get("Resources", {}).get("CPU", 0)) if node.get("Alive") else 0
                if cores < 1:
                    continue
                streams = min(2, cores)
                threads = max(threads, cores // streams)
                place = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
                self.actors += [
                    worker.options(num_cpus=cores / streams, scheduling_strategy=place).remote(
                        cpu_settings, encoder.spec, max(1, cores // streams)
                    )
                    for _ in range(streams)
                ]
        if not self.actors:
            raise ClusterError("the Ray cluster has no CPU or GPU to encode on")
        cpus = int(total.get("CPU", 1))
        self.fused = FUSED_ON_CPU and not self.gpu
        self.read_cpus = 1 if self.gpu else 0  # CPU actors hold every core: tasks share them
        self.read_window = max(2, cpus)  # chunks being read: one per core, as local threads
        self.queue = 2 if self.gpu else max(2, len(self.actors))  # batches encoding at once
        # files a read + encode call takes at most: two per decode thread on a big node
        self.cpu_part = max(_CPU_PART, 2 * threads)
        self._load = [0] * len(self.actors)
        self._owner: dict[Any, int] = {}

    def encode(self, pixels: Any, rows: list[int]) -> list[Any]:
        """Encode ``rows`` of a chunk's ``pixels``: one call on a GPU actor; on CPU actors
        the rows split across the least busy ones, as the local stage splits a batch."""
        if not rows:
            return []
        parts = 1 if self.gpu else max(1, min(len(self.actors), math.ceil(len(rows) / _MIN_PART)))
        return self._spread(len(rows), parts, lambda actor, lo, hi: actor.encode.remote(pixels, rows[lo:hi]))

    def read_encode(
        self, entries: list[Any], known: list[str | None], moved: Any, max_pixels: int
    ) -> list[Any]:
        """``fused``: read + encode ``entries`` in parts of at most :attr:`cpu_part` files
        (and at least :data:`_MIN_PART`, over as many actors) on the least busy actors."""
        if not entries:
            return []
        parts = max(min(len(self.actors), math.ceil(len(entries) / _MIN_PART)),
                    math.ceil(len(entries) / self.cpu_part))
        return self._spread(len(entries), parts, lambda actor, lo, hi: actor.read_encode.remote(
            entries[lo:hi], known[lo:hi], moved, max_pixels))

    def _spread(self, count: int, parts: int, call: Callable[[Any, int, int], Any]) -> list[Any]:
        """``count`` items in ``parts`` near-equal slices, each ``call(actor, lo, hi)`` on
        the actor with the fewest calls queued; the refs in order."""
        size, extra = divmod(count, parts)
        refs, start = [], 0
        for k in range(parts):
            end = start + size + (1 if k < extra else 0)
            slot = min(range(len(self.actors)), key=self._load.__getitem__)
            ref = call(self.actors[slot], start, end)
            self._load[slot] += 1
            self._owner[ref] = slot
            refs.append(ref)
            start = end
        return refs

    def wait_ready(self) -> None:
        """Until every actor has loaded its model (an actor that cannot raises here)."""
        self.ray.get([actor.pid.remote() for actor in self.actors])

    def busy(self) -> int:
        """Calls queued or running on the actors."""
        return sum(self._load)

    def ready(self, refs: list[Any]) -> bool:
        return not refs or len(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0]) == len(refs)

    def close(self) -> None:
        """End the actors now (they would end with the job; a library user's job lasts)."""
        for actor in self.actors:
            self.ray.kill(actor)

    def finished(self, refs: list[Any]) -> None:
        for ref in refs:
            self._load[self._owner.pop(ref)] -= 1
