"""The Jepsen-style check at the end of every failover test: each claim a
client sent was ok (200), failed (a definite 4xx) or unknown (503, timeout,
reset); what the database holds afterwards must agree with that record."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from flashsale.storage.verify import find_violations
from tests.support.traffic import Traffic


@dataclass(frozen=True)
class SetCheck:
    acknowledged: int
    failed: int
    unknown: int
    lost: list[str]  # acknowledged, missing from the database
    phantom: list[str]  # in the database, never sent
    failed_but_stored: list[str]  # a definite refusal that committed anyway
    recovered_unknowns: int  # unknown outcomes that turned out committed
    server_errors: int  # 500s: never allowed
    violations: list[str]  # stock, double claims (storage.verify)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.phantom
            or self.failed_but_stored
            or self.server_errors
            or self.violations
        )

    def summary(self) -> str:
        return (
            f"acknowledged {self.acknowledged}, lost {len(self.lost)}, failed {self.failed}, "
            f"unknown {self.unknown} (recovered {self.recovered_unknowns}), "
            f"phantom {len(self.phantom)}, 500s {self.server_errors}"
        )


async def check_set(url: str, coupon: str, traffic: Traffic) -> SetCheck:
    """Reads the coupon's claims from ``url`` (the current leader)."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT h.user_id FROM claims h JOIN coupons c ON c.id = h.coupon_id WHERE c.name = $1",
            coupon,
        )
        violations = [v.describe() for v in await find_violations(connection)]
    finally:
        await connection.close()
    stored = {row["user_id"] for row in rows}
    sent = {s.user for s in traffic.sent}
    ok = {s.user for s in traffic.sent if s.status == 200}
    failed = {s.user for s in traffic.sent if s.status is not None and 400 <= s.status < 500}
    unknown = sent - ok - failed
    return SetCheck(
        acknowledged=len(ok),
        failed=len(failed),
        unknown=len(unknown),
        lost=sorted(ok - stored),
        phantom=sorted(stored - sent),
        failed_but_stored=sorted(failed & stored),
        recovered_unknowns=len(unknown & stored),
        server_errors=sum(1 for s in traffic.sent if s.status == 500),
        violations=violations,
    )
