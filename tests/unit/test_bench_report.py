"""The bench's reading of wrk's output and its verdicts, without wrk."""

from __future__ import annotations

import pytest
from rich.console import Console

from flashsale.bench.cpu import CpuSplit
from flashsale.bench.database import Check
from flashsale.bench.raffle import entry_count_problems
from flashsale.bench.report import all_targets, render
from flashsale.bench.runner import Measurement
from flashsale.bench.scenarios import (
    CEILING,
    CLAIM_PATH,
    HELD,
    HOT,
    HOT_KEYED,
    RAFFLE,
    RETURNS,
    RUSH,
    Scenario,
)
from flashsale.bench.wrk import WrkError, WrkResult, parse_output

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/api/coupons/claim
  2 threads and 256 connections
  120000 requests in 10.00s, 20.00MB read
FLASHSALE_WRK {"duration_us":10000000,"requests":120000,"statuses":{"200":119000,"503":1000},\
"errors":{"connect":0,"read":2,"write":0,"timeout":1},\
"latency_us":{"p50":12500,"p99":48000,"max":90000,"mean":15000}}
"""


def result(ok_per_s: float, requests_per_s: float | None = None, p99_ms: float = 20) -> WrkResult:
    requests = round((requests_per_s or ok_per_s) * 10)
    return WrkResult(10.0, requests, {200: round(ok_per_s * 10)}, 0, 5.0, p99_ms)


def measured(
    strategy: str, scenario: Scenario, wrk: WrkResult, check: Check | None = None
) -> Measurement:
    claims = None if scenario is CEILING else wrk.ok
    return Measurement(strategy, scenario, wrk, check or Check(claims=claims))


def test_the_result_line_gives_rates_statuses_and_latencies_in_milliseconds() -> None:
    parsed = parse_output(WRK_OUTPUT)
    assert parsed.duration_s == 10.0
    assert parsed.requests_per_s == 12_000
    assert parsed.ok == 119_000
    assert parsed.ok_per_s == 11_900
    assert parsed.statuses == {200: 119_000, 503: 1000}
    assert parsed.socket_errors == 3
    assert (parsed.p50_ms, parsed.p99_ms) == (12.5, 48.0)


def test_output_without_a_result_line_is_an_error_that_shows_the_output() -> None:
    with pytest.raises(WrkError, match="unable to connect"):
        parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_a_fast_sound_run_meets_every_target() -> None:
    run = [
        measured("batched", CEILING, result(13_000)),
        measured("batched", HOT, result(11_000, p99_ms=40)),
        measured("batched", RUSH, result(100, requests_per_s=13_000)),
        measured("batched", HELD, result(10_000)),
        measured("batched", RETURNS, result(9_500)),
        measured("transaction", HOT, result(1_300)),
    ]
    verdicts = {target.name: target for target in all_targets(run)}
    assert all(target.met for target in verdicts.values()), verdicts
    assert verdicts["batched hot coupon: >= 8x transaction"].measured == "8.5x"
    assert verdicts["batched hot coupon, 30 s holds: >= 85% of hot coupon"].measured == "91%"
    assert verdicts["batched hot coupon: >= 75% of ceiling"].measured == "85%"


def test_a_slow_run_misses_the_throughput_targets_but_not_the_invariants() -> None:
    run = [
        measured("batched", CEILING, result(10_000)),
        measured("batched", HOT, result(6_000, p99_ms=80)),
        measured("transaction", HOT, result(2_000)),
    ]
    missed = {target.name for target in all_targets(run) if not target.met}
    assert missed == {
        "batched hot coupon: >= 10,000 claims/s",
        "batched hot coupon: p99 <= 50 ms",
        "batched hot coupon: >= 8x transaction",
        "batched hot coupon: >= 75% of ceiling",
    }


def test_holds_or_returns_far_below_the_hot_coupon_miss_their_targets() -> None:
    run = [
        measured("batched", HOT, result(10_000)),
        measured("batched", HELD, result(8_000)),
        measured("batched", RETURNS, result(9_000)),
    ]
    verdicts = {target.name: target for target in all_targets(run)}
    assert not verdicts["batched hot coupon, 30 s holds: >= 85% of hot coupon"].met
    assert verdicts["batched hot coupon, releases + expiries: >= 85% of hot coupon"].met


def test_a_broken_invariant_fails_the_run_and_shows_in_the_table() -> None:
    broken = Check(claims=1001, problems=["rush: 1001 claims and 0 remaining"])
    run = [measured("batched", RUSH, result(100, requests_per_s=12_500), broken)]
    invariant = all_targets(run)[-1]
    assert not invariant.met
    console = Console(record=True, width=200)
    console.print(render(run))
    assert "FAILED: rush: 1001 claims and 0 remaining" in console.export_text()


def test_the_table_shows_each_partys_cpu_microseconds_per_request() -> None:
    cpu = CpuSplit(server=1.0, postgres=0.4, wrk=0.2)  # seconds, over 10,000 requests
    run = [
        Measurement(
            "batched",
            HOT,
            WrkResult(10.0, 10_000, {200: 10_000}, 0, 5.0, 20.0),
            Check(claims=10_000),
            cpu,
        )
    ]
    console = Console(record=True, width=220)
    console.print(render(run))
    assert "100 / 40 / 20" in console.export_text()


def test_raffle_entries_are_measured_against_the_hot_coupon_of_the_same_run() -> None:
    entries = WrkResult(10.0, 90_000, {202: 90_000}, 0, 5.0, 20)
    run = [measured("batched", HOT, result(11_000)), measured("batched", RAFFLE, entries)]
    verdicts = {target.name: target for target in all_targets(run)}
    target = verdicts["batched raffle entries: >= 80% of hot coupon"]
    assert (target.measured, target.met) == ("82%", True)


def test_the_raffle_run_sends_the_backend_token_with_every_scenario() -> None:
    assert RAFFLE.wrk_args("u1-", "t0k") == ["BENCH_RAFFLE", CLAIM_PATH, "u1-", "bearer=t0k", "1"]
    assert HOT_KEYED.wrk_args("u1-", "t0k")[3] == "idempotency,bearer=t0k"
    assert HOT_KEYED.wrk_args("u1-")[3] == "idempotency"
    assert HOT.wrk_args("u1-")[3] == "-"


def test_entry_rows_match_the_answers_202_up_to_those_in_flight() -> None:
    assert entry_count_problems(entries=1_000, claims=0, accepted=990, in_flight=256) == []
    assert entry_count_problems(entries=989, claims=0, accepted=990, in_flight=256) == [
        "989 entry rows for 990 answers 202"
    ]
    assert entry_count_problems(entries=990, claims=3, accepted=990, in_flight=256) == [
        "3 claims of a raffle whose draw is an hour away"
    ]
