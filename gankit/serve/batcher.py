"""Micro-batching: concurrent requests for one model share one onnxruntime run.

Light tier (numpy, onnxruntime through `gankit.runtime`). Each model has a `MicroBatcher`:
an asyncio task that takes waiting requests ("jobs") in arrival order, up to
``max_batch`` rows (images) in all, and runs them as one batch on one of the model's own
worker threads (``workers`` of them, each running one batch at a time), so the event loop
never waits on onnxruntime. The first job of a batch waits at
most ``max_wait_ms`` for others to join it; jobs that arrive while a batch runs are
taken by the next batch at once. A job larger than ``max_batch`` runs alone (the
runtime splits it into chunks).

Each caller gets exactly its own rows back. A seeded job draws its latent with the
runtime's own rule, ``OnnxGenerator.sample_latent(rows, numpy.random.default_rng(seed))``,
the draw `OnnxGenerator.generate` makes, and its pixels go through the same
`gankit.images.to_uint8`, so the bytes equal `gankit.load().generate()`'s and `gankit
generate`'s: onnxruntime's CPU kernels compute each row of these generators on its own,
whatever else is in the batch (tests/test_serve_api.py checks it with mixed concurrent
requests).

`PerRequestDispatcher` has the same interface without batching: one onnxruntime call per
request on a worker thread (anyio's pool of 40, where a plain synchronous Starlette or
FastAPI handler runs), the naive server bench/bench_serve.py measures against.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from gankit.errors import GankitError, ModelFileError
from gankit.serve.errors import ApiError
from gankit.serve.models import ServedModel

# Seconds a client is told to wait when the queue is full.
RETRY_AFTER_S = 1


class Job:
    """One request's rows: labels, and either a seed (the latent is drawn) or a given latent."""

    __slots__ = ("labels", "seed", "z", "future", "t0")

    def __init__(self, labels: np.ndarray, seed: int | None, z: np.ndarray | None, future: asyncio.Future):
        self.labels = labels
        self.seed = seed
        self.z = z
        self.future = future
        self.t0 = time.perf_counter()

    @property
    def rows(self) -> int:
        return int(self.labels.size)


# Called after each run: (rows, jobs, seconds).
BatchHook = Callable[[int, int, float], None]


def run_jobs(model: ServedModel, jobs: list[Job]) -> list[np.ndarray | BaseException]:
    """Run jobs as one batch (on a worker thread): per job, its images or its error.

    Seeded jobs get uint8 [rows, 28, 28]; jobs with a given latent get float32
    [rows, 1, 28, 28], the model's raw output.
    """
    from gankit.images import to_uint8

    gen = model.generator
    zs = [job.z if job.z is not None else gen.sample_latent(job.rows, np.random.default_rng(job.seed))
          for job in jobs]
    z = zs[0] if len(zs) == 1 else np.concatenate(zs)
    labels = jobs[0].labels if len(jobs) == 1 else np.concatenate([job.labels for job in jobs])
    try:
        out = gen.generate_float(z, labels)
    except GankitError as exc:
        return [exc] * len(jobs)
    results: list[np.ndarray | BaseException] = []
    start = 0
    for job in jobs:
        part = out[start:start + job.rows]
        start += job.rows
        if job.z is not None:
            results.append(part)
        elif not np.all(np.isfinite(part)):
            results.append(ModelFileError(f"{gen.path}: the model produced non-finite pixels"))
        else:
            results.append(to_uint8(part, gen.card.value_range))
    return results


def _settle(job: Job, result) -> None:
    if job.future.done():  # the caller gave up (timeout, disconnect)
        return
    if isinstance(result, BaseException):
        job.future.set_exception(result)
    else:
        job.future.set_result(result)


class _Dispatcher:
    """What both dispatchers share: submission, the queue limit, the drain."""

    def __init__(self, model: ServedModel, queue_limit: int, on_batch: BatchHook | None = None):
        self.model = model
        self.queue_limit = queue_limit
        self.on_batch = on_batch
        self.closing = False

    @property
    def depth(self) -> int:
        """Requests waiting for their turn (not yet running)."""
        raise NotImplementedError

    def _refuse_if_full(self) -> None:
        if self.closing:
            raise ApiError(503, "the server is shutting down", {"Retry-After": str(RETRY_AFTER_S)})
        if self.depth >= self.queue_limit:
            raise ApiError(503, f"model {self.model.name!r} has {self.depth} requests waiting, the most this "
                           "server queues (--queue); try again shortly", {"Retry-After": str(RETRY_AFTER_S)})

    async def images(self, labels: np.ndarray, seed: int | None) -> np.ndarray:
        """uint8 images [rows, 28, 28] for ``labels``, the latent drawn from ``seed``."""
        return await self._submit(labels, seed, None)

    async def tensor(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The model's raw float32 output [rows, 1, 28, 28] for a given latent ``z``."""
        return await self._submit(labels, None, z)

    async def _submit(self, labels, seed, z):
        raise NotImplementedError


class MicroBatcher(_Dispatcher):
    """Merge concurrent jobs for one model into runs of at most ``max_batch`` rows."""

    def __init__(self, model: ServedModel, max_batch: int, max_wait_ms: float, queue_limit: int,
                 on_batch: BatchHook | None = None, workers: int = 1):
        super().__init__(model, queue_limit, on_batch)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers
        self._pending: collections.deque[Job] = collections.deque()
        self._pending_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"gankit-serve-{model.name}")

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model.name}")

    async def warm_up(self) -> None:
        """Run one full batch and one seeded draw, so the first request pays no first-run costs."""
        classes = self.model.classes
        labels = np.resize(np.asarray(classes, dtype=np.int64), self.max_batch)
        z = np.zeros((self.max_batch, self.model.card.z_dim), dtype=np.float32)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, run_jobs, self.model,
            [Job(labels, None, z, None), Job(labels[:1], 0, None, None)])  # type: ignore[arg-type]

    async def stop(self) -> None:
        """Finish every job already queued, then stop the task and the worker thread."""
        self.closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            await asyncio.gather(*self._running)
        self._executor.shutdown(wait=True)

    async def _submit(self, labels, seed, z):
        self._refuse_if_full()
        job = Job(labels, seed, z, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._pending_rows += job.rows
        self._wakeup.set()
        return await job.future

    def _take(self) -> list[Job]:
        batch: list[Job] = []
        rows = 0
        while self._pending:
            job = self._pending[0]
            if batch and rows + job.rows > self.max_batch:
                break
            self._pending.popleft()
            self._pending_rows -= job.rows
            if job.future.done():  # cancelled while waiting: nothing to run
                continue
            batch.append(job)
            rows += job.rows
        return batch

    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if self.closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # A free worker first: while every worker is busy, arriving jobs pile up into the next batch.
            await self._slots.acquire()
            # The first job waits at most max_wait for others, counted from its arrival.
            deadline = self._pending[0].t0 + self.max_wait_s
            while self._pending_rows < self.max_batch and not self.closing:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
                    break
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, run_jobs, self.model, batch)
        except Exception as exc:  # a bug, not a model failure: fail this batch, keep serving
            results = [exc] * len(batch)
        finally:
            self._slots.release()
        for job, result in zip(batch, results):
            _settle(job, result)
        if self.on_batch is not None:
            self.on_batch(sum(job.rows for job in batch), len(batch), time.perf_counter() - started)


class PerRequestDispatcher(_Dispatcher):
    """No batching: each request is its own onnxruntime call on a worker thread of anyio's pool."""

    def __init__(self, model: ServedModel, queue_limit: int, on_batch: BatchHook | None = None):
        super().__init__(model, queue_limit, on_batch)
        self._in_flight = 0

    @property
    def depth(self) -> int:
        return self._in_flight

    def start(self) -> None:
        pass

    async def warm_up(self) -> None:
        labels = np.asarray(self.model.classes[:1], dtype=np.int64)
        await self._call([Job(labels, 0, None, None)])  # type: ignore[arg-type]

    async def stop(self) -> None:
        self.closing = True

    async def _call(self, jobs: list[Job]):
        import anyio.to_thread  # Starlette's own dependency: the pool its synchronous handlers run in

        return await anyio.to_thread.run_sync(run_jobs, self.model, jobs)

    async def _submit(self, labels, seed, z):
        self._refuse_if_full()
        self._in_flight += 1
        started = time.perf_counter()
        try:
            job = Job(labels, seed, z, None)  # type: ignore[arg-type]
            (result,) = await self._call([job])
        finally:
            self._in_flight -= 1
        if self.on_batch is not None:
            self.on_batch(job.rows, 1, time.perf_counter() - started)
        if isinstance(result, BaseException):
            raise result
        return result
