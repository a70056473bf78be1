"""The default profile, ``docker-compose up --build``, as the original design
tells a user to run it: its curl walk-through, data kept across ``down`` and
``up``, and ``stop`` with every container exiting 0. The tests run in file
order on one project; the last one stops it."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.compose import CI_SOCKET, ComposeProject

# Run in the app's container: can it open a connection to the database's
# container, and to this host (its default gateway) on the given port?
PROBE = """
import socket, struct, sys
def opens(address):
    try:
        socket.create_connection(address, timeout=3).close()
        return "open"
    except OSError:
        return "blocked"
routes = [line.split() for line in open("/proc/net/route").readlines()[1:]]
gateway = next(int(r[2], 16) for r in routes if r[1] == "00000000")
gateway = socket.inet_ntoa(struct.pack("<L", gateway))
print("db:" + opens(("db", 5432)), "host:" + opens((gateway, int(sys.argv[1]))))
"""


def test_the_original_walk_through_answers_over_compose(default_profile: ComposeProject) -> None:
    base = default_profile.url("APP_PORT")
    created = httpx.post(f"{base}/api/coupons", json={"name": "PROMO_SUPER", "amount": 100})
    assert created.status_code == 201
    claim = {"user_id": "user_12345", "coupon_name": "PROMO_SUPER"}
    assert httpx.post(f"{base}/api/coupons/claim", json=claim).status_code == 200
    again = httpx.post(f"{base}/api/coupons/claim", json=claim)
    assert again.status_code == 409
    assert again.json()["error"] == "already_claimed"
    details = httpx.get(f"{base}/api/coupons/PROMO_SUPER")
    assert details.status_code == 200
    assert {key: details.json()[key] for key in ("name", "amount", "remaining_amount")} == {
        "name": "PROMO_SUPER",
        "amount": 100,
        "remaining_amount": 99,
    }
    assert details.json()["claimed_by"] == ["user_12345"]
    assert httpx.get(f"{base}/health").status_code == 200


def test_down_then_up_keeps_the_data(default_profile: ComposeProject) -> None:
    base = default_profile.url("APP_PORT")
    assert httpx.post(f"{base}/api/coupons", json={"name": "KEPT", "amount": 5}).status_code == 201
    claim = {"user_id": "alice", "coupon_name": "KEPT"}
    assert httpx.post(f"{base}/api/coupons/claim", json=claim).status_code == 200

    default_profile.run("down")
    default_profile.wait_for_up_to_end()
    assert default_profile.containers() == []
    default_profile.up()
    default_profile.wait_for_health("APP_PORT")

    kept = httpx.get(f"{base}/api/coupons/KEPT").json()
    assert (kept["remaining_amount"], kept["claimed_by"]) == (4, ["alice"])
    again = httpx.post(f"{base}/api/coupons/claim", json=claim)
    assert again.status_code == 409


def test_containers_reach_each_other_but_not_the_host(default_profile: ComposeProject) -> None:
    if default_profile.env.get("DOCKER_HOST") != f"unix://{CI_SOCKET}":
        pytest.skip("the wall is the CI daemon's (.ci/compose-standins), not this daemon's")
    # Listening on every address of this host: the container's only way here
    # is its bridge's gateway address, which the wall closes to new connections.
    with socket.create_server(("0.0.0.0", 0)) as listener:
        port = listener.getsockname()[1]
        seen = default_profile.exec("app", "python", "-c", PROBE, str(port))
    assert seen.split() == ["db:open", "host:blocked"]


def test_stop_exits_every_container_with_0(default_profile: ComposeProject) -> None:
    default_profile.run("stop")
    assert default_profile.wait_for_up_to_end() == 0
    containers = default_profile.containers()
    assert sorted(container.service for container in containers) == ["app", "db", "front"]
    assert [(c.name, c.running, c.exit_code) for c in containers if c.running or c.exit_code] == []
