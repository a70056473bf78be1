"""Request ids: a random prefix per process and a counter, redrawn at fork."""

from __future__ import annotations

import multiprocessing

from flashsale.http.observability import new_request_id
from tests.support.observability import GENERATED


def test_a_forked_worker_draws_its_own_id_prefix() -> None:
    parent = new_request_id()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply(new_request_id)
    assert GENERATED.fullmatch(child)
    assert child[:16] != parent[:16]
