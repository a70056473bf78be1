"""The compose profiles as a user runs them: ``docker-compose up --build``
with the project's own docker-compose.yml and Dockerfiles, on a Docker daemon
(CI's is started by .ci/compose-standins, with stand-in base images built from
Debian's packages). Skipped, naming what is missing, without docker-compose,
a daemon or the base images."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.compose import ComposeProject, compose_project, require_docker

RUSH_FROM_ONE_ADDRESS = {
    "CLAIM_RATE": "0",
    "FRONT_DOOR_SOURCE_CONNECTIONS": "100000",
    "FRONT_DOOR_SOURCE_REQUESTS": "100000000",
}


@pytest.fixture(scope="module")
def docker_env() -> dict[str, str]:
    return require_docker()


@pytest.fixture(scope="module")
def default_profile(
    docker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeProject]:
    """``docker-compose up --build``: PostgreSQL and the service, healthy."""
    with compose_project(docker_env, tmp_path_factory.mktemp("compose")) as project:
        project.up()
        project.wait_for_health("APP_PORT")
        yield project


@pytest.fixture(scope="module")
def cluster_profile(
    docker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeProject]:
    """``docker-compose --profile cluster up --build --scale instance=3``:
    HAProxy in front of three instances behind PgBouncer, healthy."""
    log_dir = tmp_path_factory.mktemp("compose")
    # The rush comes from one address (the host, through Docker's proxy):
    # the per-client and per-address limits the profile sets are off here.
    env = {**docker_env, **RUSH_FROM_ONE_ADDRESS}
    with compose_project(env, log_dir, "cluster") as project:
        project.up("--scale", "instance=3")
        project.wait_for_health("CLUSTER_PORT")
        yield project
