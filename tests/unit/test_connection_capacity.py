"""What the start-up check says about the service's pools and its server's
connection slots (storage.pool.judge: the numbers are the server's)."""

from __future__ import annotations

import pytest

from flashsale.config import load_settings
from flashsale.storage.pool import ConnectionsExceeded, ServerCapacity, judge

STOCK = ServerCapacity(
    max_connections=100,
    superuser_reserved=3,
    reserved=0,
    role_limit=None,
    database_limit=None,
    in_use=0,
    through_pooler=False,
)


def test_twelve_workers_of_ten_outgrow_a_stock_server_and_the_message_says_what_to_change() -> None:
    with pytest.raises(ConnectionsExceeded) as refused:
        judge(STOCK, load_settings({"WEB_WORKERS": "12", "DB_POOL_MAX": "10"}))
    message = str(refused.value)
    assert "WEB_WORKERS=12 x DB_POOL_MAX=10 = 120 connections" in message
    assert "accepts 97" in message
    assert "max_connections 100, superuser_reserved_connections 3" in message
    assert "lower WEB_WORKERS or DB_POOL_MAX, raise max_connections" in message


def test_pools_that_fit_are_logged_with_what_bounds_them() -> None:
    line = judge(STOCK, load_settings({"WEB_WORKERS": "2", "DB_POOL_MAX": "10"}))
    assert line.startswith("connections: WEB_WORKERS=2 x DB_POOL_MAX=10 = 20 of 97")


def test_reserved_slots_and_connection_limits_are_not_the_service_s() -> None:
    server = ServerCapacity(100, 3, 5, 50, None, 0, False)  # the role's CONNECTION LIMIT 50
    with pytest.raises(ConnectionsExceeded, match=r"accepts 50 .*CONNECTION LIMIT 50"):
        judge(server, load_settings({"WEB_WORKERS": "6", "DB_POOL_MAX": "10"}))
    assert "of 92" in judge(
        ServerCapacity(100, 3, 5, None, None, 0, False),
        load_settings({"WEB_WORKERS": "9", "DB_POOL_MAX": "10"}),
    )


def test_connections_in_use_by_others_warn_but_do_not_refuse() -> None:
    busy = ServerCapacity(100, 3, 0, None, None, in_use=40, through_pooler=False)
    line = judge(busy, load_settings({"WEB_WORKERS": "8", "DB_POOL_MAX": "10"}))
    assert "40 are in use now by other sessions" in line


def test_behind_a_pooler_the_server_limit_is_not_the_service_s() -> None:
    pooled = ServerCapacity(100, 3, 0, None, None, 0, through_pooler=True)
    line = judge(pooled, load_settings({"WEB_WORKERS": "12", "DB_POOL_MAX": "100"}))
    assert "client connections to a pooler" in line
    assert "max_client_conn" in line
