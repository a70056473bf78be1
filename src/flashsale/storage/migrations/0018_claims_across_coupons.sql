-- Claims batched across coupons (issue 23).
--
-- Spread over many coupons, a claim batch per coupon paid one round trip, one
-- transaction and one WAL flush per coupon per batch: the per-claim cost
-- batching exists to avoid. claim_many_coupons decides the parts of several
-- coupons in one call and one transaction: their rows locked first in one
-- global order (coupons.id), then claim_many per part, unchanged, so every
-- rule of a one-coupon batch holds for each part. A batch of one coupon
-- still goes to claim_many itself (the hot coupon pays nothing for this).

-- claim_many_coupons: one batch of several coupons' claims and releases, in
-- one transaction (a lane's batch: claims/lanes.py).
-- In:  p_coupons, distinct coupon names (the batch's parts); p_user_counts
--      and p_release_counts, how many of p_users and p_releases each part
--      has: p_users holds part 1's distinct users, then part 2's, and so on
--      (likewise p_releases).
-- Out: one row per part, in p_coupons' order: part (its 1-based position)
--      and claim_many's row for that coupon's users and releases.
-- Locks: every coupon's row first, FOR UPDATE in one statement ordered by
--      coupons.id (LockRows runs above the sort, so rows are locked in id
--      order): two such batches wait for each other's coupons in the same
--      order, and every other writer holds at most one coupon row while it
--      waits for one (change_coupon, redeem_claim, claim_many and its keyed
--      wrappers), or never waits (expire_holds: SKIP LOCKED). No deadlock.
--      Then claim_many per part, whose own FOR UPDATE finds its lock held.
-- Decides each part exactly as claim_many does, under its row lock, without
--      a subtransaction (no EXCEPTION block: more than 64 subtransactions in
--      one transaction overflow the per-backend cache). An error in one part
--      fails the whole statement; the store then decides each part on its
--      own (storage/store.py decide_coupons).
-- Triggers: claim_many's, a statement per part (each coupon's events keep
--      their own gap-free seq).
CREATE FUNCTION claim_many_coupons(p_coupons text[], p_user_counts integer[], p_users text[],
                                   p_release_counts integer[], p_releases text[])
RETURNS TABLE (part integer, coupon_id bigint, remaining integer, claimed text[],
               holders text[], refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user integer := 1;
    v_release integer := 1;
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE;
    FOR v_part IN 1 .. coalesce(cardinality(p_coupons), 0) LOOP
        RETURN QUERY
            SELECT v_part, r.coupon_id, r.remaining, r.claimed, r.holders, r.refusal,
                   r.claimed_at, r.expires_at, r.released, r.redeemed
              FROM claim_many(p_coupons[v_part],
                              coalesce(p_users[v_user:v_user + p_user_counts[v_part] - 1], '{}'),
                              coalesce(p_releases[v_release:v_release
                                                  + p_release_counts[v_part] - 1], '{}')) AS r;
        v_user := v_user + p_user_counts[v_part];
        v_release := v_release + p_release_counts[v_part];
    END LOOP;
END
$$;
