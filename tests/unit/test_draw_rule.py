"""The public draw rule against its definition (RFC 2104 HMAC, FIPS 180 SHA-256)."""

from __future__ import annotations

import hashlib

from flashsale import draw_rule

SEED = bytes(range(32))


def test_commitment_is_the_hex_sha256_of_the_seed() -> None:
    assert draw_rule.commitment(SEED) == hashlib.sha256(SEED).hexdigest()


def test_an_entrant_is_the_sha256_of_its_user_id_in_utf8() -> None:
    assert draw_rule.entrant_digest("zoë") == hashlib.sha256("zoë".encode()).digest()


def test_the_ticket_is_hmac_sha256_spelled_out_from_sha256() -> None:
    digest = draw_rule.entrant_digest("alice")
    key = SEED + bytes(32)  # a 32-byte key is zero-padded to SHA-256's 64-byte block
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + digest).digest()
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()
    assert draw_rule.ticket(SEED, digest) == outer


def test_draw_order_sorts_digests_by_ticket() -> None:
    digests = [draw_rule.entrant_digest(f"user-{n}") for n in range(50)]
    order = draw_rule.draw_order(SEED, digests)
    tickets = [draw_rule.ticket(SEED, digest) for digest in order]
    assert tickets == sorted(tickets)
    assert sorted(order) == sorted(digests)


def test_draw_order_does_not_depend_on_arrival_order() -> None:
    digests = [draw_rule.entrant_digest(f"user-{n}") for n in range(50)]
    assert draw_rule.draw_order(SEED, digests) == draw_rule.draw_order(SEED, digests[::-1])


def test_another_seed_gives_another_order() -> None:
    digests = [draw_rule.entrant_digest(f"user-{n}") for n in range(50)]
    other = bytes(32)
    assert draw_rule.draw_order(SEED, digests) != draw_rule.draw_order(other, digests)
