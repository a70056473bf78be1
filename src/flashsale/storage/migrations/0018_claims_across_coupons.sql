-- Claims batched across coupons (issue 23).
--
-- Spread over many coupons, a claim batch per coupon paid one round trip, one
-- transaction and one WAL flush per coupon per batch: the per-claim cost
-- batching exists to avoid. claim_many_coupons decides the parts of several
-- coupons in one call and one transaction: their rows locked first in one
-- global order (coupons.id), then each part by claim_many's rules (the
-- common parts in one INSERT, the others by claim_many itself), so every
-- rule of a one-coupon batch holds for each part. A batch of one coupon
-- still goes to claim_many itself (the hot coupon pays nothing for this).
-- sold_out_coupons does the same for the lock-free sold-out reads.

-- Room on each page for the next version of its coupons' rows: every claim
-- batch updates its coupons' rows (stock, event_seq), and an update stays
-- heap-only (HOT: no index entry, the old version pruned in place) only if
-- the new version fits on the same page. Packed full (the default 100), a
-- table of many coupons sold at once turns nearly every update into a
-- non-HOT one (measured: 7 of 1,658 updates HOT over 1,000 coupons), so
-- every index grows and each lock and read walks dead versions. Rows
-- written from now on get the room; existing ones after a table rewrite.
ALTER TABLE coupons SET (fillfactor = 50);

-- claim_many_coupons: one batch of several coupons' claims and releases, in
-- one transaction (a lane's batch: claims/lanes.py).
-- In:  p_coupons, distinct coupon names (the batch's parts, numbered from 1);
--      p_user_counts, how many users each part has; p_user_parts and p_users,
--      parallel: each distinct user of a part with its part's number, part 1's
--      first; p_release_parts and p_releases likewise for the releases.
-- Out: one row per part: part (its number) and claim_many's row for that
--      coupon's users and releases (the fast parts first, then the others).
-- Locks: every coupon's row first, FOR UPDATE in one statement ordered by
--      coupons.id (LockRows runs above the sort, so rows are locked in id
--      order): two such batches wait for each other's coupons in the same
--      order, and every other writer holds at most one coupon row while it
--      waits for one (change_coupon, redeem_claim, claim_many and its keyed
--      wrappers), or never waits (expire_holds: SKIP LOCKED). No deadlock.
-- Decides each part as claim_many decides it, under its row lock, in two
--      ways. The common part (the sale open, no hold due, no release, stock
--      for every user: claim_many's first INSERT and nothing else) goes in one
--      INSERT for all such parts, so the statement triggers run once for the
--      batch (they group by coupon: each coupon's events keep their own
--      gap-free seq). Every other part is a call of claim_many itself (whose
--      own FOR UPDATE finds its lock held). No subtransaction (no EXCEPTION
--      block: more than 64 in one transaction overflow the per-backend
--      cache): an error in one part fails the whole statement, and the store
--      then decides each part on its own (storage/store.py decide_coupons).
CREATE FUNCTION claim_many_coupons(p_coupons text[], p_user_counts integer[],
                                   p_user_parts integer[], p_users text[],
                                   p_release_parts integer[], p_releases text[])
RETURNS TABLE (part integer, coupon_id bigint, remaining integer, claimed text[],
               holders text[], refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
    v_fast integer[];
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE;
    v_now := clock_timestamp();
    SELECT coalesce(array_agg(p.ord::integer), '{}') INTO v_fast
      FROM unnest(p_coupons, p_user_counts) WITH ORDINALITY AS p(name, n, ord)
      JOIN coupons AS c ON c.name = p.name
     WHERE sale_refusal(c.starts_at, c.ends_at, c.active, v_now) IS NULL
       AND (c.holds_due_at IS NULL OR c.holds_due_at > v_now)
       AND c.remaining_amount >= p.n
       AND p.ord <> ALL (p_release_parts);
    RETURN QUERY
        WITH fast AS (
            SELECT p.ord::integer AS part, c.id, c.name, c.remaining_amount,
                   v_now + make_interval(secs => c.hold_seconds) AS expires_at
              FROM unnest(p_coupons) WITH ORDINALITY AS p(name, ord)
              JOIN coupons AS c ON c.name = p.name
             WHERE p.ord = ANY (v_fast)
        ), inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
            SELECT f.id, f.name, u.user_id, v_now, f.expires_at
              FROM unnest(p_user_parts, p_users) WITH ORDINALITY AS u(part, user_id, ord)
              JOIN fast AS f ON f.part = u.part
             ORDER BY u.ord
            ON CONFLICT DO NOTHING
            RETURNING claims.coupon_id, claims.user_id
        ), granted AS (
            SELECT i.coupon_id, array_agg(i.user_id) AS users
              FROM inserted AS i GROUP BY i.coupon_id
        )
        SELECT f.part, f.id, f.remaining_amount - coalesce(cardinality(g.users), 0),
               coalesce(g.users, '{}'), NULL::text[], NULL::text, v_now, f.expires_at,
               '{}'::text[], '{}'::text[]
          FROM fast AS f LEFT JOIN granted AS g ON g.coupon_id = f.id;
    FOR v_part IN 1 .. coalesce(cardinality(p_coupons), 0) LOOP
        CONTINUE WHEN v_part = ANY (v_fast);
        RETURN QUERY
            SELECT v_part, r.coupon_id, r.remaining, r.claimed, r.holders, r.refusal,
                   r.claimed_at, r.expires_at, r.released, r.redeemed
              FROM claim_many(p_coupons[v_part],
                              ARRAY(SELECT u.user_id
                                      FROM unnest(p_user_parts, p_users)
                                           WITH ORDINALITY AS u(part, user_id, ord)
                                     WHERE u.part = v_part ORDER BY u.ord),
                              ARRAY(SELECT u.user_id
                                      FROM unnest(p_release_parts, p_releases)
                                           WITH ORDINALITY AS u(part, user_id, ord)
                                     WHERE u.part = v_part ORDER BY u.ord)) AS r;
    END LOOP;
END
$$;

-- sold_out_coupons: sold_out_batch for several coupons in one read (the
-- sold-out lanes' batch across coupons).
-- In:  p_coupons, distinct names; p_user_counts, how many of p_users are each
--      coupon's (p_users holds the first coupon's users, then the second's...).
-- Out: sold_out_batch's rows for each coupon, with its part number (from 1).
-- Locks: none: a plain snapshot read. Triggers: none.
CREATE FUNCTION sold_out_coupons(p_coupons text[], p_user_counts integer[], p_users text[])
RETURNS TABLE (part integer, arrival integer, holds boolean, coupon_id bigint,
               remaining integer, refusal text)
LANGUAGE sql STABLE AS $$
    WITH p AS (
        SELECT c.name, c.ord::integer AS part, c.n,
               (sum(c.n) OVER (ORDER BY c.ord))::integer - c.n AS before
          FROM unnest(p_coupons, p_user_counts) WITH ORDINALITY AS c(name, n, ord)
    )
    SELECT p.part, s.arrival, s.holds, s.coupon_id, s.remaining, s.refusal
      FROM p CROSS JOIN LATERAL sold_out_batch(p.name, p_users[p.before + 1 : p.before + p.n]) AS s
     ORDER BY p.part, s.arrival
$$;
