"""The encode actors of ``clipfind index --ray`` (:mod:`clipfind.indexer.ray_pipeline`):
how many, where, and which gets the next batch. ``ray`` is passed in: nothing here
imports it at module level."""

from __future__ import annotations

import math
from typing import Any

from clipfind.config import Settings
from clipfind.encoding import Encoder
from clipfind.errors import ClusterError
from clipfind.indexer.ray_work import EncodeWorker

RETRIES = 4  # a worker process or node lost mid-run: tasks re-run, actors restart this often
_MIN_PART = 4  # images: a CPU batch is split across actors down to parts this small


class EncodePool:
    """Encode actors: one per GPU where the cluster has GPUs (fp16 there), else per node
    up to two single-threaded streams sharing its cores, as :func:`plan_streams` does
    locally. Decode tasks run beside CPU actors (the OS interleaves them, as the local
    decode threads do) and on the CPUs a GPU cluster leaves to them."""

    def __init__(self, ray: Any, settings: Settings, encoder: Encoder) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        worker = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(EncodeWorker)
        total = ray.cluster_resources()
        gpus = int(total.get("GPU", 0)) if not settings.device.startswith("cpu") else 0
        self.gpu = gpus > 0
        self.actors: list[Any] = []
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
        self.read_cpus = 1 if self.gpu else 0
        self.read_window = max(2, cpus)  # chunks being read: one per core, as local threads
        self.queue = 2 if self.gpu else max(2, len(self.actors))  # batches encoding at once
        self._load = [0] * len(self.actors)
        self._owner: dict[Any, int] = {}

    def encode(self, pixels: Any, rows: list[int]) -> list[Any]:
        """Encode ``rows`` of a chunk's ``pixels``: one call on a GPU actor; on CPU actors
        the rows split across the least busy ones, as the local stage splits a batch."""
        if not rows:
            return []
        parts = 1 if self.gpu else max(1, min(len(self.actors), math.ceil(len(rows) / _MIN_PART)))
        size, extra = divmod(len(rows), parts)
        refs, start = [], 0
        for k in range(parts):
            end = start + size + (1 if k < extra else 0)
            slot = min(range(len(self.actors)), key=self._load.__getitem__)
            ref = self.actors[slot].encode.remote(pixels, rows[start:end])
            self._load[slot] += 1
            self._owner[ref] = slot
            refs.append(ref)
            start = end
        return refs

    def ready(self, refs: list[Any]) -> bool:
        return not refs or len(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0]) == len(refs)

    def close(self) -> None:
        """End the actors now (they would end with the job; a library user's job lasts)."""
        for actor in self.actors:
            self.ray.kill(actor)

    def finished(self, refs: list[Any]) -> None:
        for ref in refs:
            self._load[self._owner.pop(ref)] -= 1
