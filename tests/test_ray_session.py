"""Which Ray a command uses (pure decisions) and the bounded wait for an address
that does not answer. No cluster is started here."""

from __future__ import annotations

import socket
import time

import pytest

from actors.ray_session import (
    JOB_ENV_VAR,
    How,
    RayUnreachableError,
    host_port,
    plan_connection,
    probe,
)
from hullft.config import ClusterConfig, ConfigError, build_config


def test_no_address_anywhere_starts_a_private_local_ray() -> None:
    plan = plan_connection(None, {})
    assert plan.how is How.LOCAL and plan.address == "local"
    # an empty RAY_ADDRESS (as tests and users set to unset it) is no address
    assert plan_connection(None, {"RAY_ADDRESS": ""}).how is How.LOCAL


def test_config_address_wins_over_ray_address() -> None:
    plan = plan_connection("10.0.0.1:6379", {"RAY_ADDRESS": "10.0.0.2:6379"})
    assert (plan.how, plan.address) == (How.ADDRESS, "10.0.0.1:6379")
    assert plan.source == "cluster.address=10.0.0.1:6379"


def test_ray_address_attaches_and_is_named() -> None:
    plan = plan_connection(None, {"RAY_ADDRESS": "10.0.0.2:6379"})
    assert (plan.how, plan.address, plan.source) == (
        How.ADDRESS,
        "10.0.0.2:6379",
        "RAY_ADDRESS=10.0.0.2:6379",
    )


def test_inside_a_ray_job_attaches_to_the_jobs_cluster() -> None:
    assert plan_connection(None, {JOB_ENV_VAR: "{}"}).address == "auto"
    plan = plan_connection(None, {JOB_ENV_VAR: "{}", "RAY_ADDRESS": "10.0.0.3:6379"})
    assert (plan.how, plan.address) == (How.JOB, "10.0.0.3:6379")
    assert plan_connection("auto", {JOB_ENV_VAR: "{}"}).how is How.JOB


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("ray://head:10001", ("head", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("auto", None),
        ("local", None),
        ("head", None),
        ("head:port", None),
    ],
)
def test_host_port(address: str, expected: tuple[str, int] | None) -> None:
    assert host_port(address) == expected


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_address_fails_in_bounded_time_naming_it() -> None:
    port = _closed_port()
    t0 = time.monotonic()
    with pytest.raises(RayUnreachableError) as err:
        probe(f"127.0.0.1:{port}", f"cluster.address=127.0.0.1:{port}", timeout_s=1.0)
    # bounded: it gave up after its 1 s (no upper wall-clock bound asserted here;
    # the point is that it returns at all, and says where it looked)
    assert time.monotonic() - t0 >= 0.5
    msg = str(err.value)
    assert f"cluster.address=127.0.0.1:{port}" in msg and "\n" not in msg
    assert "cluster.connect_timeout_s" in msg
    assert isinstance(err.value, OSError)  # the CLI reports OSErrors as one line


def test_reachable_address_passes_the_probe() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        probe(f"127.0.0.1:{server.getsockname()[1]}", "test", timeout_s=5.0)


def test_addresses_ray_resolves_itself_are_not_probed() -> None:
    probe("auto", "cluster.address=auto", timeout_s=0.01)  # returns at once


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("connect_timeout_s", 0),
        ("connect_timeout_s", float("inf")),
        ("attempt_timeout_s", -1.0),
        ("attempt_timeout_s", float("nan")),
        ("retry_backoff_s", float("inf")),
        ("restart_wait_s", -1.0),
    ],
)
def test_cluster_timeouts_are_validated(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"cluster.{key}"):
        build_config(ClusterConfig, {key: value}, "cluster")


def test_attempt_timeout_may_be_off() -> None:
    assert build_config(ClusterConfig, {"attempt_timeout_s": None}).attempt_timeout_s is None
