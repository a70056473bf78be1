-- Sold-out reads and lane batches that cost what their arrivals cost
-- (issue 23, many small sales: most answers sold-out reads, the claims in
-- batches of a dozen coupons with one claim each).
--
-- sold_out_batch (and sold_out_coupons, which inlines it) asked whether each
-- arrival holds the coupon with an EXISTS in its select list. PostgreSQL may
-- plan such an EXISTS as a hashed subplan: every claim of every coupon read
-- and hashed, on each call. It did so with fresh statistics whenever the
-- claims table was a few thousand rows (EXPLAIN with 5,000 claims and 40
-- arrivals: a sequential scan of the 5,000, 1.5-2.5 ms, against 0.15 ms
-- for 40 index probes), and a generic plan made while the table was small
-- kept it as the table grew: on the bench's many small sales alone, the
-- sold-out reads cost PostgreSQL 71 us per request once every coupon was
-- sold out, the rush on the same database 44 (6 with a small table).
-- OFFSET 0 in the EXISTS keeps PostgreSQL from turning it into a hash
-- (subselect.c simplify_EXISTS_query gives up on an OFFSET): one probe per
-- arrival, whatever the statistics said when the plan was made (a table of
-- a few pages may still be read whole per arrival until its statistics
-- catch up; a sold-out read only runs once a coupon has sold out).
--
-- claim_many_coupons ran its common-part INSERT and its sold-out statement
-- for every batch, also when no part was for them. An INSERT of no rows
-- still fires the statement triggers (claims_take_stock: an UPDATE and an
-- INSERT over an empty transition table), and the sold-out statement, whose
-- plan PostgreSQL does not keep (pg_stat_statements: one planning per call,
-- about 0.3 ms on the loaded bench machine), was planned for every batch.
-- Each now runs only when it has parts. Decisions, locks and their order
-- are unchanged.

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
    -- Each statement only when it has parts: an INSERT of no rows still
    -- fires the statement triggers, and the sold-out statement is planned
    -- anew on every call (0025).
    IF cardinality(v_fast) > 0 THEN
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
    END IF;
    -- A sold-out part: what claim_many's scarce-stock path answers with no
    -- unit left (nobody granted, its users' claims as holders, no refusal:
    -- sold_out), read in one statement for all such parts instead of a
    -- claim_many call each (0024). A statement after the locks: it sees
    -- every claim committed before them.
    IF cardinality(v_gone) > 0 THEN
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
    END IF;
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

CREATE OR REPLACE FUNCTION sold_out_batch(p_coupon_name text, p_users text[])
RETURNS TABLE (arrival integer, holds boolean, coupon_id bigint, remaining integer,
               refusal text)
LANGUAGE sql STABLE AS $$
    WITH k AS (
        SELECT c.id,
               c.remaining_amount
                   + (SELECT count(*)::integer FROM claims AS d
                       WHERE c.holds_due_at <= now()
                         AND d.coupon_id = c.id AND d.redeemed_at IS NULL
                         AND d.expires_at IS NOT NULL AND d.expires_at <= now()) AS remaining,
               coalesce(sale_refusal(c.starts_at, c.ends_at, c.active, now()),
                        nullif(raffle_refusal(c.id, c.draw_at, c.drawn_at, now()), 'entered'))
                   AS refusal
          FROM coupons AS c WHERE c.name = p_coupon_name
    )
    SELECT u.ord::integer,
           -- OFFSET 0 keeps this a probe of the primary key per arrival: an
           -- EXISTS may otherwise be planned as a hash of every claim of
           -- every coupon, built on each call (0025).
           EXISTS (SELECT 1 FROM claims AS h
                    WHERE h.coupon_id = k.id AND h.user_id = u.user_id
                      AND (h.redeemed_at IS NOT NULL OR h.expires_at IS NULL
                           OR h.expires_at > now())
                   OFFSET 0),
           k.id,
           k.remaining,
           k.refusal
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
      LEFT JOIN k ON true
     ORDER BY u.ord
$$;
