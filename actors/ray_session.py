"""Which Ray a command runs on, and shutting down only what it started.

Three ways, decided by :func:`plan_connection` (pure) and logged by :func:`connect`:

- **local** — no address anywhere: start a private Ray with
  ``ray.init(address="local", ...)``. It never attaches to another cluster, not
  even one recorded on the machine by ``ray start`` (its ``ray_current_cluster``
  file), running or dead.
- **address** — ``cluster.address`` or a non-empty ``RAY_ADDRESS``: attach to that
  cluster. The address is probed first, so an unreachable one fails within
  ``cluster.connect_timeout_s`` with one line naming it, instead of Ray's retries.
- **job** — inside ``ray job submit``: attach to the job's cluster (and keep the
  job's runtime env).

A process already connected (a test fixture, the bench reusing one session across
its sweep points) keeps that connection and never shuts it down.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import ray

from hullft.config import ClusterConfig

log = logging.getLogger(__name__)

JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray in the driver of a submitted job."""


class How(enum.Enum):
    LOCAL = "local"
    ADDRESS = "address"
    JOB = "job"


@dataclass(frozen=True)
class ConnectionPlan:
    how: How
    address: str | None = None
    """What ``ray.init`` gets as ``address`` (``local`` for a private Ray)."""
    source: str = ""
    """Where the address came from, as a user would set it: ``cluster.address=...``
    or ``RAY_ADDRESS=...`` (empty for a local Ray)."""


def plan_connection(config_address: str | None, environ: Mapping[str, str]) -> ConnectionPlan:
    """How to connect, from ``cluster.address`` and the environment (pure)."""
    env_address = environ.get("RAY_ADDRESS") or None
    if JOB_ENV_VAR in environ:
        address = config_address or env_address or "auto"
        return ConnectionPlan(How.JOB, address, "the Ray job")
    if config_address:
        return ConnectionPlan(How.ADDRESS, config_address, f"cluster.address={config_address}")
    if env_address:
        return ConnectionPlan(How.ADDRESS, env_address, f"RAY_ADDRESS={env_address}")
    return ConnectionPlan(How.LOCAL, "local")


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; ``None`` for ``auto``
    and anything else Ray resolves itself."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class RayUnreachableError(ConnectionError):
    """The configured Ray address did not answer in time."""


def probe(address: str, source: str, timeout_s: float) -> None:
    """Wait until ``address`` accepts a TCP connection, at most ``timeout_s``.

    Ray itself retries a dead GCS for minutes without a word; a user who mistyped
    an address should hear about it at once."""
    hp = host_port(address)
    if hp is None:
        return
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection(hp, timeout=max(0.1, min(left, 5.0))):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() + 0.5 > deadline:
            break
        time.sleep(0.5)
    raise RayUnreachableError(
        f"no Ray cluster answers at {source} within {timeout_s:g} s ({last}); "
        "check the address and that the cluster is up, or unset it to start a local Ray "
        "(cluster.connect_timeout_s sets the wait)"
    )


def _runtime_env() -> dict[str, dict[str, str]]:
    """What the actors need from this process's environment (offline hub, caches)."""
    env_vars = {k: os.environ.get(k, "1") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env_vars["TOKENIZERS_PARALLELISM"] = "false"
    for k in ("HULLFT_CACHE", "XDG_CACHE_HOME"):
        if k in os.environ:
            env_vars[k] = os.environ[k]
    return {"env_vars": env_vars}


@dataclass(frozen=True)
class RaySession:
    """A connection to Ray; :meth:`close` shuts Ray down only if this session
    started it."""

    plan: ConnectionPlan | None
    """``None``: the process was already connected when the session was opened."""
    owned: bool
    """Whether this session called ``ray.init``: closing it then stops the local Ray
    it started, or only disconnects from a cluster it attached to."""

    def close(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()


def connect(cluster: ClusterConfig) -> RaySession:
    """Connect as :func:`plan_connection` says (or keep an existing connection)."""
    if ray.is_initialized():
        log.info("using the Ray this process is already connected to")
        return RaySession(None, owned=False)
    plan = plan_connection(cluster.address, os.environ)
    if plan.how is How.JOB:
        # The job's runtime env (cluster/runtime_env.yaml) already applies, and Ray
        # refuses a second one that sets the same keys.
        log.info("running as a Ray job; attaching to its cluster (%s)", plan.address)
        ray.init(address=plan.address, log_to_driver=True)
        return RaySession(plan, owned=True)
    if plan.how is How.ADDRESS:
        assert plan.address is not None
        probe(plan.address, plan.source, cluster.connect_timeout_s)
        log.info("attaching to the Ray cluster at %s", plan.source)
        # Bound Ray's own GCS retries as well (addresses we cannot probe, e.g. auto).
        os.environ.setdefault(
            "RAY_gcs_server_port_wait_time_s", str(max(1, math.ceil(cluster.connect_timeout_s)))
        )
        ray.init(address=plan.address, runtime_env=_runtime_env(), log_to_driver=True)
        return RaySession(plan, owned=True)
    log.info(
        "starting a local Ray (num_cpus=%s, num_gpus=%s); set cluster.address or "
        "RAY_ADDRESS to use a running cluster",
        cluster.num_cpus,
        cluster.num_gpus,
    )
    ray.init(
        address="local",
        num_cpus=cluster.num_cpus,
        num_gpus=cluster.num_gpus,
        include_dashboard=False,
        runtime_env=_runtime_env(),
    )
    return RaySession(plan, owned=True)


@contextmanager
def session(cluster: ClusterConfig) -> Iterator[RaySession]:
    """``with session(cfg.cluster): ...`` — connect, and shut down what was started."""
    s = connect(cluster)
    try:
        yield s
    finally:
        s.close()
