"""The driver's event loop on fake actors and a fake Ray (no cluster): batched
calls, a failing call split so that the bad query fails alone, a dead worker's
queued calls retried for free, a hung worker killed and replaced, a restarting
selector costing no attempt, exactly-once rows throughout."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from ray.exceptions import ActorUnavailableError, RayActorError, RayError, RayTaskError

from actors.gpu_worker import QueryWork, WorkerInfo
from actors.policy import RetryPolicy
from actors.scheduler import Actors, Scheduler, Task
from hullft.pipeline import Candidates


class Ref:
    """An object ref: its value is computed when fetched; arguments that are refs
    are resolved first, and their error is the call's error (as in Ray)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args
        self.hangs = False

    def get(self) -> Any:
        args = [a.get() if isinstance(a, Ref) else a for a in self.args]
        assert not self.hangs, "fetched a hung call"
        return self.fn(*args)


class Method:
    def __init__(
        self, fn: Callable[..., Any], hangs_for: Callable[..., bool] = lambda *a: False
    ) -> None:
        self.fn, self.hangs_for = fn, hangs_for

    def remote(self, *args: Any) -> Ref:
        ref = Ref(self.fn, *args)
        ref.hangs = self.hangs_for(*args)
        return ref


class FakeRay:
    def __init__(self) -> None:
        self.killed: list[Any] = []

    def wait(self, refs: list[Ref], num_returns: int = 1, timeout: float | None = None):
        for r in refs:
            if not r.hangs:
                return [r], [x for x in refs if x is not r]
        time.sleep(min(timeout or 0.01, 0.01))
        return [], refs

    def get(self, ref: Ref) -> Any:
        try:
            return ref.get()
        except RayError:
            raise
        except Exception as exc:  # what a method raised reaches the caller wrapped
            raise RayTaskError("run_batch", repr(exc), exc) from exc

    def kill(self, actor: Any, no_restart: bool = True) -> None:
        self.killed.append(actor)


class Sink:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Any] = {}

    def write(self, rows: list[Any]) -> None:
        for r in rows:
            key = (r.query_id, r.method)
            assert key not in self.rows, f"{key} written twice"
            self.rows[key] = r


def _cands(q: Any) -> Candidates:
    z = np.zeros(1, dtype=np.float32)
    return Candidates(q.query_id, q.domain, q.text, np.zeros(1, np.int64), z, z)


Hang = Callable[[str, list[str]], bool]
"""``hang(worker_id, query_ids)``: whether that call never returns."""


class Worker:
    """A model worker: ``behave(worker, work)`` may raise, or return ``None`` for
    the normal rows; a call for which ``hang`` says so never returns."""

    def __init__(
        self,
        worker_id: str,
        behave: Callable[[Worker, list[QueryWork]], Any],
        hang: Hang = lambda w, q: False,
    ):
        self.worker_id = worker_id
        self.calls: list[list[str]] = []
        self.behave = behave
        self.run_batch = Method(
            self._run_batch, lambda work, *s: hang(worker_id, [w.cands.query_id for w in work])
        )
        self.ping = Method(lambda: f"id-{worker_id}")
        self.prepare = Method(lambda: self.info)
        self.info = WorkerInfo(worker_id, f"id-{worker_id}", 1, "cpu")

    def _run_batch(self, work: list[QueryWork], *sels: Any) -> Any:
        self.calls.append([w.cands.query_id for w in work])
        out = self.behave(self, work)
        if out is not None:
            return out
        return [
            [
                SimpleNamespace(
                    query_id=w.cands.query_id,
                    method=m,
                    status="ok",
                    attempt=w.ctx.attempt,
                    worker_id=self.worker_id,
                )
                for m in ("base", *(s[0] for s in sel))
            ]
            for w, sel in zip(work, sels, strict=True)
        ]


def _run(
    n_queries: int,
    behave: Callable[[Worker, list[QueryWork]], Any] = lambda w, work: None,
    *,
    batch_size: int = 1,
    num_workers: int = 1,
    max_calls: int = 2,
    policy: RetryPolicy | None = None,
    attempt_timeout_s: float | None = None,
    select: Callable[..., Any] | None = None,
    hang: Hang = lambda w, q: False,
) -> tuple[Scheduler, Sink, FakeRay, list[Worker]]:
    workers: list[Worker] = []

    def spawn(worker_id: str) -> Worker:
        w = Worker(worker_id, behave, hang)
        w.info = WorkerInfo(worker_id, f"id-{worker_id}", batch_size, "cpu")
        workers.append(w)
        return w

    index = SimpleNamespace(search=Method(lambda qs, k: [_cands(q) for q in qs]))
    selector = SimpleNamespace(
        select=Method(select or (lambda cands, methods, cfg: [(m,) for m in methods]))
    )
    queries = [SimpleNamespace(query_id=f"q{i}", domain="d", text="t") for i in range(n_queries)]
    sink, fake = Sink(), FakeRay()
    scheduler = Scheduler(
        actors=Actors([index], [selector], spawn, num_workers),
        tasks=[Task(q, ("knn", "hullft"), True) for q in queries],
        sink=sink,  # type: ignore[arg-type]
        run_id="r",
        k=4,
        n=2,
        policy=policy or RetryPolicy(max_attempts=3, backoff_s=0.0),
        max_calls_per_worker=max_calls,
        attempt_timeout_s=attempt_timeout_s,
        ray_api=fake,
    )
    assert scheduler.run() == ""
    assert len(sink.rows) == 3 * n_queries  # base + two methods, once each
    return scheduler, sink, fake, workers


def test_every_query_once_one_at_a_time() -> None:
    scheduler, sink, _, (w0,) = _run(5)
    assert all(len(c) == 1 for c in w0.calls) and len(w0.calls) == 5
    assert all(r.status == "ok" and r.attempt == 1 for r in sink.rows.values())
    assert scheduler.counters.processed == 5 and not scheduler.counters.retried


def test_a_worker_gets_calls_of_up_to_its_batch_size() -> None:
    _, _, _, (w0,) = _run(7, batch_size=3, max_calls=1)
    sizes = [len(c) for c in w0.calls]
    assert sum(sizes) == 7 and max(sizes) == 3 and all(1 <= s <= 3 for s in sizes)


def test_a_bad_query_in_a_batch_fails_alone() -> None:
    def oom_on_q2(w: Worker, work: list[QueryWork]) -> Any:
        if "q2" in [x.cands.query_id for x in work]:
            raise RuntimeError("out of memory (injected)")
        return None

    _, sink, _, (w0,) = _run(6, oom_on_q2, batch_size=3, max_calls=1)
    bad = [r for (q, _), r in sink.rows.items() if q == "q2"]
    assert all(r.status == "failed" and r.attempt == 3 for r in bad)
    good = [r for (q, _), r in sink.rows.items() if q != "q2"]
    assert all(r.status == "ok" and r.attempt == 1 for r in good)
    assert ["q2"] in w0.calls  # retried in a call of its own


def test_dead_worker_is_replaced_and_only_its_running_call_counts() -> None:
    died: list[str] = []

    def die_once_on_q1(w: Worker, work: list[QueryWork]) -> Any:
        ids = [x.cands.query_id for x in work]
        if "q1" in ids and not died:
            died.append(w.worker_id)
            raise RayActorError(actor_id=f"id-{w.worker_id}")
        return None

    scheduler, sink, _, workers = _run(4, die_once_on_q1, max_calls=3)
    assert died == ["w0"] and [w.worker_id for w in workers] == ["w0", "w1"]
    assert scheduler.counters.replaced == 1
    attempts = {q: r.attempt for (q, m), r in sink.rows.items() if m == "base"}
    assert attempts["q1"] == 2
    # q2, q3 were queued behind q1 on the dead worker: retried without spending an attempt
    assert attempts["q0"] == attempts["q2"] == attempts["q3"] == 1


def test_a_selector_death_is_not_the_workers() -> None:
    """A selection handed by reference fails with the selector's id: the worker
    stays, the query waits for the restart without spending its only attempt."""
    failures = iter([RayActorError(actor_id="selector-id"), None, None, None])

    def select(cands: Any, methods: Any, cfg: Any) -> Any:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return [(m,) for m in methods]

    scheduler, sink, _, workers = _run(
        3, select=select, policy=RetryPolicy(max_attempts=1, backoff_s=0.0)
    )
    assert len(workers) == 1 and scheduler.counters.replaced == 0
    assert all(r.status == "ok" and r.attempt == 1 for r in sink.rows.values())


def test_a_restarting_selector_costs_no_attempt() -> None:
    unavailable = iter(range(4))

    def select(cands: Any, methods: Any, cfg: Any) -> Any:
        if next(unavailable, None) is not None:
            raise ActorUnavailableError("restarting", b"\x01" * 16)
        return [(m,) for m in methods]

    scheduler, sink, _, _ = _run(
        2, select=select, policy=RetryPolicy(max_attempts=1, backoff_s=0.001)
    )
    assert all(r.status == "ok" and r.attempt == 1 for r in sink.rows.values())
    assert scheduler.counters.retried


def test_a_hung_worker_is_killed_replaced_and_its_query_retried() -> None:
    scheduler, sink, fake, workers = _run(
        3,
        hang=lambda worker_id, ids: worker_id == "w0" and "q1" in ids,
        max_calls=1,
        attempt_timeout_s=0.05,
    )
    assert fake.killed == [workers[0]] and scheduler.counters.replaced == 1
    q1 = [r for (q, _), r in sink.rows.items() if q == "q1"]
    assert all(r.status == "ok" and r.attempt == 2 and r.worker_id == "w1" for r in q1)


def test_no_worker_left_stops_with_a_reason() -> None:
    def always_die(w: Worker, work: list[QueryWork]) -> Any:
        raise RayActorError(actor_id=f"id-{w.worker_id}")

    workers: list[Worker] = []

    def spawn(worker_id: str) -> Worker:
        w = Worker(worker_id, always_die)
        workers.append(w)
        return w

    index = SimpleNamespace(search=Method(lambda qs, k: [_cands(q) for q in qs]))
    selector = SimpleNamespace(select=Method(lambda c, m, cfg: [(x,) for x in m]))
    queries = [SimpleNamespace(query_id=f"q{i}", domain="d", text="t") for i in range(2)]
    sink = Sink()
    scheduler = Scheduler(
        actors=Actors([index], [selector], spawn, 1),
        tasks=[Task(q, ("knn",), True) for q in queries],
        sink=sink,  # type: ignore[arg-type]
        run_id="r",
        k=4,
        n=2,
        policy=RetryPolicy(max_attempts=2, backoff_s=0.0),
        max_calls_per_worker=2,
        attempt_timeout_s=None,
        ray_api=FakeRay(),
    )
    message = scheduler.run()
    # w0 dies on q0 (attempt 1; q1 queued behind it is collateral), w1 on q0's
    # attempt 2 (q0 gets failure rows), w2 on q1: the replacements are spent
    # (num_workers × max_attempts = 2), so the run stops, q1 left for a rerun.
    assert "every model worker died" in message
    assert [w.worker_id for w in workers] == ["w0", "w1", "w2"]
    assert scheduler.counters.replaced == 2
    assert set(sink.rows) == {("q0", "base"), ("q0", "knn")}
    assert all(r.status == "failed" and r.attempt == 2 for r in sink.rows.values())
