"""Fixtures for the failover tests: a fresh Patroni cluster per test (they kill
its nodes). The service itself creates and migrates its database through the
multi-host URL (start-up goes to the primary: storage.primary)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.patroni import Cluster, missing_packages, running_cluster


@pytest.fixture
def ha_cluster() -> Iterator[Cluster]:
    if missing := missing_packages():
        pytest.skip(f"needs the Debian packages {', '.join(missing)} (apt-get install)")
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def ha_database(ha_cluster: Cluster) -> str:
    """The multi-host URL with target_session_attrs=read-write, every node listed."""
    return ha_cluster.multi_host_url
