-- Claims across coupons, cheaper per coupon (issue 23): two look-ups fewer
-- per coupon of a lane's batch, sold-out parts without a claim_many call
-- each, and no scan of every coupon per batch.
--
-- claim_many_coupons kept nothing of the rows it locked and looked each
-- coupon up by name twice more (the common part's test, then its INSERT).
-- FOR UPDATE returns each locked row's newest version (re-read after any
-- wait), so the rows it locks are the rows to decide from: kept in an array,
-- joined by name in memory. Lock order and decisions are unchanged.
--
-- A part whose coupon has no unit left (sold out by another worker, or
-- claims that waited in the lane for the batch that sold it) was a call of
-- claim_many each: several statements to find that nobody gets a unit.
-- Such parts are now answered together in one statement (their users'
-- claims as holders, sold_out for the others), as claim_many answers them.
--
-- claims_take_stock moves each coupon's stock with an UPDATE joined to the
-- statement's transition table. The planner estimates that table's groups
-- as its rows, so once a batch held a few dozen claims the join went to a
-- sequential scan of every coupon (measured: 1,000 rows read for a batch of
-- 57 coupons), a cost that grew with the table, not the batch. The same rows
-- are now also named by primary key from an array, which is looked up by
-- index whatever the table's size. claims_return_stock (releases, expiries,
-- deletes) had the same join and gets the same bound.

CREATE OR REPLACE FUNCTION claim_many_coupons(p_coupons text[], p_user_counts integer[],
                                              p_user_parts integer[], p_users text[],
                                              p_release_parts integer[], p_releases text[],
                                              p_release_actors text[] DEFAULT '{}')
RETURNS TABLE (part integer, coupon_id bigint, remaining integer, claimed text[],
               holders text[], refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
    v_fast integer[];
    v_gone integer[];
    v_rows coupons[];
BEGIN
    -- The locked rows are kept: FOR UPDATE returns each row's newest version
    -- (re-read after any wait), so the decision reads them here instead of
    -- looking every coupon up twice more by name (0024).
    v_rows := ARRAY(SELECT k FROM coupons AS k
                     WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE);
    v_now := clock_timestamp();
    -- The fast parts have stock for every user; the sold-out parts none (a
    -- coupon another worker sold out, or claims that waited for the batch
    -- that sold it): both only on claim_many's plain path (sale open, no
    -- hold due, no release, first come).
    SELECT coalesce(array_agg(p.ord::integer) FILTER (WHERE c.remaining_amount >= p.n), '{}'),
           coalesce(array_agg(p.ord::integer) FILTER (WHERE c.remaining_amount = 0 AND p.n > 0),
                    '{}')
      INTO v_fast, v_gone
      FROM unnest(p_coupons, p_user_counts) WITH ORDINALITY AS p(name, n, ord)
      JOIN unnest(v_rows) AS c ON c.name = p.name
     WHERE sale_refusal(c.starts_at, c.ends_at, c.active, v_now) IS NULL
       AND (c.holds_due_at IS NULL OR c.holds_due_at > v_now)
       AND c.allocation = 'first_come'  -- a raffle's part is claim_many's (0021)
       AND p.ord <> ALL (p_release_parts);
    RETURN QUERY
        WITH fast AS (
            SELECT p.ord::integer AS part, c.id, c.name, c.remaining_amount,
                   v_now + make_interval(secs => c.hold_seconds) AS expires_at
              FROM unnest(p_coupons) WITH ORDINALITY AS p(name, ord)
              JOIN unnest(v_rows) AS c ON c.name = p.name
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
    -- A sold-out part: what claim_many's scarce-stock path answers with no
    -- unit left (nobody granted, its users' claims as holders, no refusal:
    -- sold_out), read in one statement for all such parts instead of a
    -- claim_many call each (0024). A statement after the locks: it sees
    -- every claim committed before them.
    RETURN QUERY
        SELECT p.ord::integer, c.id, 0, '{}'::text[],
               ARRAY(SELECT h.user_id
                       FROM unnest(p_user_parts, p_users) AS u(part, user_id)
                       JOIN claims AS h ON h.coupon_id = c.id AND h.user_id = u.user_id
                      WHERE u.part = p.ord),
               NULL::text, v_now, v_now + make_interval(secs => c.hold_seconds),
               '{}'::text[], '{}'::text[]
          FROM unnest(p_coupons) WITH ORDINALITY AS p(name, ord)
          JOIN unnest(v_rows) AS c ON c.name = p.name
         WHERE p.ord = ANY (v_gone);
    FOR v_part IN 1 .. coalesce(cardinality(p_coupons), 0) LOOP
        CONTINUE WHEN v_part = ANY (v_fast) OR v_part = ANY (v_gone);
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
                                     WHERE u.part = v_part ORDER BY u.ord),
                              p_release_actors[v_part]::jsonb) AS r;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- Why the raffle granted these claims (raffle_draw_step, raffle_promote),
    -- read once per statement; NULL for the claim path's claims.
    v_reason text := nullif(current_setting('flashsale.claim_reason', true), '');
BEGIN
    WITH n AS (
        SELECT coupon_id, count(*) AS taken, min(expires_at) AS first_expiry
          FROM new_claims GROUP BY coupon_id
    ), moved AS (
        UPDATE coupons AS c
           SET remaining_amount = c.remaining_amount - n.taken,
               holds_due_at = least(c.holds_due_at, n.first_expiry),
               event_seq = c.event_seq + n.taken,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM n
         WHERE c.id = n.coupon_id
           -- The same rows by their primary key: the planner takes a
           -- transition table for as many coupons as it has rows, and
           -- joined it to a sequential scan of every coupon once a batch
           -- held a few dozen claims (0024); an array is looked up by index.
           AND c.id = ANY (ARRAY(SELECT n.coupon_id FROM n))
        RETURNING c.id, c.event_seq - n.taken AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           'claimed', k.user_id, k.claimed_at,
           CASE WHEN v_reason IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('reason', v_reason) END
      FROM new_claims AS k
      JOIN moved AS m ON m.id = k.coupon_id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION claims_return_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_reason text := coalesce(nullif(current_setting('flashsale.end_reason', true), ''),
                              'deleted');
    -- Who released which user's hold (claim_many's p_release_actors), read
    -- once per statement; NULL for other deletes (expiry, an operator's SQL).
    v_actors jsonb := nullif(current_setting('flashsale.release_actors', true), '')::jsonb;
BEGIN
    WITH o AS (
        SELECT coupon_id, count(*) AS returned FROM old_claims GROUP BY coupon_id
    ), moved AS (
        UPDATE coupons AS c
           SET remaining_amount = c.remaining_amount + o.returned,
               event_seq = c.event_seq + o.returned,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM o
         WHERE c.id = o.coupon_id
           AND c.id = ANY (ARRAY(SELECT o.coupon_id FROM o))  -- by index: claims_take_stock
        RETURNING c.id, c.event_seq - o.returned AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           CASE WHEN v_reason = 'expired' THEN 'expired' ELSE 'released' END,
           k.user_id, clock_timestamp(),
           CASE WHEN v_reason = 'expired' THEN '{}'::jsonb
                WHEN v_actors ? k.user_id
                THEN jsonb_build_object('reason', v_reason, 'actor', v_actors -> k.user_id)
                ELSE jsonb_build_object('reason', v_reason) END
      FROM old_claims AS k
      JOIN moved AS m ON m.id = k.coupon_id;
    INSERT INTO claim_history (claim_id, coupon_id, coupon_name, user_id, claimed_at,
                               expires_at, redeemed_at, reason)
    SELECT o.id, o.coupon_id, o.coupon_name, o.user_id, o.claimed_at, o.expires_at,
           o.redeemed_at, v_reason
      FROM old_claims AS o;
    RETURN NULL;
END
$$;
