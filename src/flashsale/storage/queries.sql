-- All SQL the service runs at request time. Each query starts with a
-- "-- name: <query_name>" header; the store runs queries by that name.

-- name: ping
-- Health check: the database answers, is a primary (a node demoted by a
-- failover is in recovery), and can commit: Patroni's synchronous_mode_strict
-- sets synchronous_standby_names to '*' when no synchronous standby is left,
-- and then every commit waits until a standby connects (a walsender row).
SELECT pg_is_in_recovery() AS read_only,
       current_setting('synchronous_standby_names') = '*'
         AND NOT EXISTS (SELECT 1 FROM pg_stat_replication) AS no_standby;

-- name: create_coupon
-- New coupon with full stock; a duplicate name fails on coupons_name_key, a
-- window that ends before it starts on coupons_window_order, a draw outside
-- the window on coupons_draw_in_window. No row back: ends_at ($4) or draw_at
-- ($7) is not in the future by the database's clock. A raffle ($6) stores
-- its seed ($8) in the same statement (raffle_seeds; the coupon keeps only
-- sha256 of it, the commitment).
WITH c AS (
    INSERT INTO coupons (name, amount, remaining_amount, starts_at, ends_at, hold_seconds,
                         allocation, draw_at, draw_commitment)
    SELECT $1, $2, $2, $3, $4, $5, $6, $7, sha256($8::bytea)
     WHERE ($4::timestamptz IS NULL OR $4::timestamptz > now())
       AND ($7::timestamptz IS NULL OR $7::timestamptz > now())
    RETURNING *
), seed AS (
    INSERT INTO raffle_seeds (coupon_id, seed, inner_key, outer_key)
    SELECT c.id, $8, raffle_pad($8, 54), raffle_pad($8, 92) FROM c WHERE $8::bytea IS NOT NULL
)
SELECT name, amount, remaining_amount,
       raffle_status(coupon_status(starts_at, ends_at, active, remaining_amount, now()),
                     draw_at, drawn_at, now()) AS status,
       starts_at, ends_at, hold_seconds, 0 AS redeemed, allocation, draw_at,
       encode(draw_commitment, 'hex') AS draw_commitment, NULL::text AS draw_seed,
       CASE WHEN allocation = 'raffle' THEN 0 END AS entries,
       NULL::integer AS draw_winners, NULL::integer AS waitlisted
  FROM c;

-- name: act_as
-- Who makes this transaction's admin change (JSON: kind, name or subject):
-- its events carry it as data.actor (schema.sql event_actor_data). Local to
-- the transaction (set_config's is_local), so a pooled connection, or a
-- PgBouncer server connection, never lends it to the next one.
SELECT set_config('flashsale.actor', $1, true);

-- name: change_coupon
-- PATCH: the coupon changed under its row lock (the function: schema.sql);
-- 'ok' or why not. The store reads coupon_state after it, in the same transaction.
SELECT change_coupon($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: change_raffle
-- PATCH of allocation or draw_at, before change_coupon in its transaction
-- (the function: schema.sql): 'ok' or why not.
SELECT change_raffle($1, $2, $3, $4, $5);

-- name: coupon_state
-- One coupon as clients see it (due holds count as returned; the view: schema.sql).
SELECT name, amount, remaining_amount, status, starts_at, ends_at, hold_seconds, redeemed,
       allocation, draw_at, draw_commitment, draw_seed, entries, draw_winners, waitlisted
  FROM coupon_state
 WHERE name = $1;

-- name: redeem_claim
-- A live hold redeemed (the function: schema.sql); the claim is read after it.
SELECT redeem_claim($1, $2);

-- name: expire_holds
-- The sweeper's statement: due holds of up to $1 coupons deleted, each once
-- across every worker and instance (the function: schema.sql).
SELECT expire_holds($1);

-- name: find_claim
-- One user's live claim on a coupon. No row: no such coupon; a row with a
-- NULL user_id: the coupon exists and the user holds no live claim. For a
-- raffle, the user's entry too: entered (a row of raffle_entries), its place
-- once the draw is done (drawn_at set; raffle_place derives it), and served,
-- the places handed a unit so far (winners and promoted): a place after them
-- is waiting.
SELECT c.name AS coupon_name, h.id, h.user_id, h.status, h.claimed_at, h.expires_at,
       h.redeemed_at, e.user_id IS NOT NULL AS entered,
       CASE WHEN c.drawn_at IS NOT NULL THEN raffle_place(c.id, e.ticket, e.entrant) END AS place,
       CASE WHEN c.drawn_at IS NOT NULL AND e.user_id IS NOT NULL
            THEN (SELECT d.winners + d.promoted FROM raffle_draws AS d
                   WHERE d.coupon_id = c.id) END AS served
  FROM coupons AS c
  LEFT JOIN live_claims AS h ON h.coupon_id = c.id AND h.user_id = $2
  LEFT JOIN raffle_entries AS e
         ON c.allocation = 'raffle' AND e.coupon_id = c.id AND e.user_id = $2
 WHERE c.name = $1;

-- name: entries_page
-- Up to $3 entrants of raffle $1 after the entrant $2 (NULL: from the
-- first). Until the draw is done (drawn_at), by entrant without places
-- (raffle_entries_entrant_idx); after it, in draw order
-- (raffle_entries_order_idx, from the cursor's own ticket: one probe), each
-- place the cursor's (raffle_place, once per page) plus the row's rank on
-- the page: places are contiguous in draw order. No row at all: no such
-- coupon; a single row with a NULL entrant: the page is empty (an unknown
-- cursor included).
SELECT e.entrant, e.place
  FROM coupons AS c
  LEFT JOIN LATERAL (
        SELECT y.ticket, y.entrant, raffle_place(c.id, y.ticket, y.entrant) AS place
          FROM raffle_entries AS y
         WHERE c.drawn_at IS NOT NULL AND y.coupon_id = c.id AND y.entrant = $2::bytea
         LIMIT 1
  ) AS page_start ON true
  LEFT JOIN LATERAL (
        (SELECT x.entrant, NULL::integer AS place, x.entrant AS sort
           FROM raffle_entries AS x
          WHERE c.drawn_at IS NULL AND x.coupon_id = c.id
            AND ($2::bytea IS NULL OR x.entrant > $2::bytea)
          ORDER BY x.entrant
          LIMIT $3)
        UNION ALL
        (SELECT x.entrant,
                (coalesce(page_start.place, 0)
                 + row_number() OVER (ORDER BY x.ticket, x.entrant))::integer AS place,
                x.ticket AS sort
           FROM raffle_entries AS x
          WHERE c.drawn_at IS NOT NULL AND x.coupon_id = c.id
            AND ($2::bytea IS NULL
                 OR (x.ticket, x.entrant) > (page_start.ticket, page_start.entrant))
          ORDER BY x.ticket, x.entrant
          LIMIT $3)
  ) AS e ON true
 WHERE c.name = $1
 ORDER BY e.sort, e.entrant;

-- name: start_draws
-- The draws to step now: up to $1 raffles due, frozen by this call if
-- not started yet (the function: schema.sql).
SELECT raffle_start_draws($1) AS coupon_id;

-- name: draw_step
-- The next $2 places of coupon $1's draw in this statement's transaction;
-- true when the draw is done (the function: schema.sql).
SELECT raffle_draw_step($1, $2);

-- name: user_claims_page
-- Up to $3 of user $1's live claims with ids below $2, newest first: a
-- backward walk of claims_user_order_idx.
SELECT h.coupon_name, h.id, h.user_id, h.status, h.claimed_at, h.expires_at, h.redeemed_at
  FROM live_claims AS h
 WHERE h.user_id = $1 AND h.id < $2
 ORDER BY h.id DESC
 LIMIT $3;

-- name: decide_batch
-- Decides a batch of distinct users' claims on one coupon under its row lock
-- in one round trip, window, pause and due holds included: one row with who
-- was granted, who held it, why the sale refused, and the releases ($3) that
-- rode in the batch: which went back, which were redeemed, and who released
-- each ($4: user id -> actor, or NULL; the function: schema.sql).
SELECT coupon_id, remaining, claimed, holders, refusal, claimed_at, expires_at,
       released, redeemed
  FROM claim_many($1, $2::text[], $3::text[], $4::jsonb);

-- name: decide_coupons_batch
-- decide_batch for several coupons in one transaction (a lane's batch):
-- $1 the coupons, $2 how many distinct users each has, $3/$4 each user with
-- its coupon's number in $1 (from 1), $5/$6 each release likewise, $7 each
-- coupon's release actors (parallel to $1, as decide_batch's $4). One row
-- per coupon, as decide_batch's, with its number (the function: schema.sql).
SELECT part, coupon_id, remaining, claimed, holders, refusal, claimed_at, expires_at,
       released, redeemed
  FROM claim_many_coupons($1::text[], $2::integer[], $3::integer[], $4::text[],
                          $5::integer[], $6::text[], $7::text[]);

-- name: decide_coupons_keyed_batch
-- decide_coupons_batch for a batch with Idempotency-Keys in some parts:
-- $8-$10 the claims' scope, keys and fingerprints (parallel to $4), $11-$13
-- the releases' (parallel to $6). Each row also carries its part's keyed
-- arrivals' decisions, as decide_keyed_batch's (the function: schema.sql).
SELECT part, coupon_id, remaining, claimed, holders, refusal, claimed_at, expires_at,
       released, redeemed, claim_outcomes, claim_replayed, claim_claimed_ats,
       claim_expires_ats, release_outcomes, release_replayed
  FROM claim_many_coupons_keyed($1::text[], $2::integer[], $3::integer[], $4::text[],
                                $5::integer[], $6::text[], $7::text[], $8, $9::text[],
                                $10::bytea[], $11, $12::text[], $13::bytea[]);

-- name: decide_keyed_batch
-- decide_batch under Idempotency-Keys (the wrapper: schema.sql): $4-$6 the claims' scope, keys and
-- fingerprints (parallel to $2), $7-$9 the releases' (parallel to $3), $10
-- who released each (as decide_batch's $4). Each
-- keyed arrival's decision comes back in claim_* / release_* (stored in this
-- transaction, or replayed from an earlier one).
SELECT coupon_id, remaining, claimed, holders, refusal, claimed_at, expires_at,
       released, redeemed, claim_outcomes, claim_replayed, claim_claimed_ats,
       claim_expires_ats, release_outcomes, release_replayed
  FROM claim_many_keyed($1, $2::text[], $3::text[], $4, $5::text[], $6::bytea[], $7,
                        $8::text[], $9::bytea[], $10::jsonb);

-- name: decide_batch_new_keys
-- decide_batch with claim keys believed new ($4-$6: scope, keys, fingerprints,
-- parallel to $2; $7 the release actors, as decide_batch's $4; the function:
-- schema.sql). A stored or concurrently taken
-- key raises unique_violation on idempotency_keys_pkey and the batch rolls
-- back whole: the store sends it as decide_keyed_batch then.
SELECT coupon_id, remaining, claimed, holders, refusal, claimed_at, expires_at,
       released, redeemed, claim_outcomes
  FROM claim_many_new_keys($1, $2::text[], $3::text[], $4, $5::text[], $6::bytea[], $7::jsonb);

-- name: sold_out_batch
-- Lock-free answers for a coupon believed sold out (the function: schema.sql).
SELECT arrival, holds, coupon_id, remaining, refusal
  FROM sold_out_batch($1, $2::text[]);

-- name: sold_out_coupons_batch
-- sold_out_batch for several coupons in one read: $1 the coupons, $2 how
-- many of $3 are each one's (the function: schema.sql).
SELECT part, arrival, holds, coupon_id, remaining, refusal
  FROM sold_out_coupons($1::text[], $2::integer[], $3::text[]);

-- name: claim_one
-- The original design's transaction per claim: one claim, one transaction
-- (autocommit), each waiting for the coupon's row lock in turn. It runs the
-- claim path's function with one user, so windows, pause and holds are
-- decided exactly as for a batch.
SELECT coupon_id, remaining, claimed, holders, refusal, claimed_at, expires_at
  FROM claim_many($1, ARRAY[$2::text]);

-- name: find_violations
-- Every coupon that breaks an invariant: stock out of bounds, stock that does
-- not match its claims (the rows of claims: held, redeemed, or held past
-- expiry and not swept yet, which still keep their unit), a user holding it
-- twice, or a claim both live and recorded as ended (its unit returned while
-- it still counts). Empty on a healthy database.
SELECT c.name, c.amount, c.remaining_amount,
       count(h.user_id) AS claims,
       count(h.user_id) - count(DISTINCT h.user_id) AS duplicate_claims,
       count(e.claim_id) AS ended_but_live
  FROM coupons AS c
  LEFT JOIN claims AS h ON h.coupon_id = c.id
  LEFT JOIN claim_history AS e ON e.claim_id = h.id
 GROUP BY c.id
HAVING c.remaining_amount < 0
    OR c.remaining_amount > c.amount
    OR c.amount - c.remaining_amount <> count(h.user_id)
    OR count(h.user_id) <> count(DISTINCT h.user_id)
    OR count(e.claim_id) > 0
 ORDER BY c.name;

-- name: count_coupons_and_claims
-- What `flashsale verify` checked, for its summary line.
SELECT (SELECT count(*) FROM coupons) AS coupons, (SELECT count(*) FROM claims) AS claims;

-- name: coupon_header
-- The coupon a streamed read starts from; its claimers come from
-- coupon_claimers in the same REPEATABLE READ snapshot, where now() is one
-- instant: the due holds coupon_state counts as returned are exactly those
-- live_claims leaves out, so amount - remaining_amount = len(claimed_by).
SELECT id, name, amount, remaining_amount, status, starts_at, ends_at, hold_seconds, redeemed,
       allocation, draw_at, draw_commitment, draw_seed, entries, draw_winners, waitlisted
  FROM coupon_state
 WHERE name = $1;

-- name: small_coupon
-- A coupon and, when it has at most $2 claimers, all of them in claim order,
-- in one statement: one snapshot and one now(), as coupon_header's
-- transaction gives, so amount - remaining_amount = len(claimers) here too,
-- in one round trip instead of five (BEGIN, the header, DECLARE, FETCH,
-- COMMIT), each of which waits its turn behind the claim batches. NULL
-- claimers: more than $2 (the subquery is not run), read through
-- coupon_header and the cursor instead.
SELECT id, name, amount, remaining_amount, status, starts_at, ends_at, hold_seconds, redeemed,
       allocation, draw_at, draw_commitment, draw_seed, entries, draw_winners, waitlisted,
       CASE WHEN s.amount - s.remaining_amount <= $2
            THEN ARRAY(SELECT h.user_id FROM live_claims AS h WHERE h.coupon_id = s.id ORDER BY h.id)
       END AS claimers
  FROM coupon_state AS s
 WHERE name = $1;

-- name: coupon_claimers
-- A coupon's live claimers in claim order, read through a cursor in batches;
-- walks claims_coupon_order_idx, so no sort however many there are. An SQL
-- cursor (DECLARE, then FETCH): it lives in the transaction, so it works
-- behind a transaction-mode pooler, where asyncpg's cursors would leave a
-- named prepared statement on a server connection other clients then get.
DECLARE coupon_claimers NO SCROLL CURSOR FOR
SELECT user_id FROM live_claims WHERE coupon_id = $1 ORDER BY id;

-- name: fetch_coupon_claimers
-- The next {rows} claimers of the cursor above (FETCH takes no parameter).
FETCH FORWARD {rows} FROM coupon_claimers;

-- name: claims_page
-- Up to $3 claims of coupon $1 after claim id $2 (keyset on
-- claims_coupon_order_idx). No row at all: no such coupon; a single row with
-- a NULL id: the coupon exists and the page is empty.
SELECT h.id, h.user_id, h.claimed_at
  FROM coupons AS c
  LEFT JOIN LATERAL (SELECT id, user_id, claimed_at
                       FROM live_claims
                      WHERE coupon_id = c.id AND id > $2
                      ORDER BY id
                      LIMIT $3) AS h ON true
 WHERE c.name = $1
 ORDER BY h.id;

-- name: coupons_page
-- Up to $2 coupons named after $1, by name (keyset on coupons_name_key).
SELECT name, amount, remaining_amount, status, starts_at, ends_at, hold_seconds, redeemed,
       allocation, draw_at, draw_commitment, draw_seed, entries, draw_winners, waitlisted
  FROM coupon_state
 WHERE name > $1
 ORDER BY name
 LIMIT $2;

-- name: recent_activity
-- The live dashboard's tick: the $1 coupons claimed most recently (then the
-- newest unclaimed ones), each with its last $2 claimers, newest first. One
-- backward probe of claims_coupon_order_idx per coupon; never a scan of claims.
-- Status, holds and redemptions come from coupon_state (due holds counted as
-- returned): one probe of the partial hold and redeemed indexes each; so do a
-- raffle's entries (a counter on the row) and waitlist (its draw's row).
SELECT s.name, s.amount, v.remaining_amount, v.status, v.redeemed,
       s.amount - v.remaining_amount - v.redeemed AS holds,
       v.allocation, v.entries, v.waitlisted,
       ARRAY(SELECT h.user_id
               FROM live_claims AS h
              WHERE h.coupon_id = s.id
              ORDER BY h.id DESC
              LIMIT $2) AS recent
  FROM (SELECT c.id, c.name, c.amount, c.remaining_amount, l.last_id
          FROM coupons AS c
          CROSS JOIN LATERAL (SELECT max(h.id) AS last_id
                                FROM claims AS h
                               WHERE h.coupon_id = c.id) AS l
         ORDER BY l.last_id DESC NULLS LAST, c.id DESC
         LIMIT $1) AS s
 CROSS JOIN LATERAL (SELECT remaining_amount, status, redeemed, allocation, entries, waitlisted
                      FROM coupon_state WHERE id = s.id) AS v
 ORDER BY s.last_id DESC NULLS LAST, s.id DESC;

-- name: store_service_timeouts
-- Start-up: the configured timeouts (ms) stored for PgBouncer's connect_query
-- and taken by this session, the serving role's 0005 defaults reset (0016);
-- true when the stored values changed.
SELECT store_service_timeouts($1, $2, $3);

-- name: apply_timeouts
-- A new pooled connection takes the service's timeouts (text, in ms) for its
-- whole session: is_local false. RESET ALL would drop them (the pool never
-- sends it: pool.py keep_session).
SELECT set_config('statement_timeout', $1, false),
       set_config('lock_timeout', $2, false),
       set_config('idle_in_transaction_session_timeout', $3, false);

-- name: session_timeouts
-- What this session's timeouts are (tests, and a start-up log line).
SELECT current_setting('statement_timeout') AS statement_timeout,
       current_setting('lock_timeout') AS lock_timeout,
       current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction;

-- name: take_idempotency_key
-- The request's key taken for this transaction (fresh), or what the request
-- that took it first stored (the function: schema.sql; it waits for an
-- attempt still in flight with the same key).
SELECT fresh, fingerprint, status, body FROM take_idempotency_key($1, $2, $3);

-- name: keep_idempotent_answer
-- The answer a keyed request gave, stored in the transaction of its effect
-- under the key take_idempotency_key took in it.
UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2;

-- name: purge_idempotency_keys
-- Up to $2 keys older than $1 seconds, oldest first (idempotency_keys_created_idx).
-- SKIP LOCKED: purges of several workers split the rows instead of queueing,
-- and the purge never waits for a request (nor a request for it: a request
-- only conflicts with a key row of its own key, which is hours younger).
WITH old AS (
    SELECT k.scope, k.key
      FROM idempotency_keys AS k
     WHERE k.created_at < now() - make_interval(secs => $1)
     ORDER BY k.created_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), purged AS (
    DELETE FROM idempotency_keys AS k USING old
     WHERE k.scope = old.scope AND k.key = old.key
    RETURNING 1
)
SELECT count(*)::integer FROM purged;

-- name: events_page
-- Up to $3 events of the global feed after position ($1 xid, $2 id), in
-- (xid, id) order: a keyset walk of events_feed_idx.
--
-- Why a consumer paging this never skips an event: an event row carries an
-- xid at least that of the transaction that wrote it (its own, or the
-- coupon's previous event's when higher: 0009), and only rows with
-- xid < pg_snapshot_xmin(pg_current_snapshot()) are returned. xmin is "the
-- lowest transaction ID that was still active" when the snapshot was taken:
-- every transaction with a smaller xid has committed or aborted, so this
-- statement's snapshot (READ COMMITTED: taken when it starts) already sees
-- every committed row below it, and nothing below it can ever appear later.
-- Every transaction still running, or yet to be assigned an xid, has
-- xid >= xmin (xids are handed out in increasing order), so whatever it
-- commits later sorts after every row returned now, hence after the cursor;
-- and a row's xid below xmin means its writer (whose own xid is no higher)
-- has ended. Per coupon, xid never goes down as seq goes up, and equal xids
-- come in id order (0009), so each coupon's events arrive in seq order.
-- (PostgreSQL docs, "Transaction ID and Snapshot Information Functions":
-- pg_current_snapshot, pg_snapshot_xmin; xid8 is 64-bit and never wraps, so
-- the order is total for the life of the cluster.)
--
-- The price: a transaction that stays open anywhere on the server (any
-- database: xids are cluster-wide) holds the feed back at its xid until it
-- ends. The feed waits; it never skips. idle_in_transaction_session_timeout
-- (0005) bounds how long a forgotten session can do that.
-- (The xid column goes out as text, asyncpg has no xid8 codec; ORDER BY
-- names e.xid, since a bare "xid" would sort by that text output column.)
SELECT e.id, e.xid::text AS xid, e.coupon_name, e.seq, e.type, e.user_id, e.at,
       e.data::text AS data
  FROM events AS e
 WHERE (e.xid, e.id) > ($1::text::xid8, $2::bigint)
   AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY e.xid, e.id
 LIMIT $3;

-- name: coupon_events_page
-- Up to $3 events of coupon $1 with seq above $2, by seq (its primary key).
-- A coupon's events commit in seq order (each writer holds the coupon's row
-- lock from numbering to commit), so a reader that sees seq n sees every
-- seq below it: paging by seq skips nothing. No row at all: no such
-- coupon; a single row with a NULL id: the coupon exists, the page is empty.
SELECT e.id, e.xid::text AS xid, c.name AS coupon_name, e.seq, e.type, e.user_id, e.at,
       e.data::text AS data
  FROM coupons AS c
  LEFT JOIN LATERAL (SELECT id, xid, seq, type, user_id, at, data
                       FROM events
                      WHERE coupon_id = c.id AND seq > $2
                      ORDER BY seq
                      LIMIT $3) AS e ON true
 WHERE c.name = $1
 ORDER BY e.seq;

-- name: register_webhook
-- A new endpoint, with a stream for every coupon already there starting after
-- the coupon's last event in this statement's snapshot (coupons.event_seq,
-- numbered under the coupon's row lock): an endpoint hears what happens from
-- now on. A coupon this snapshot does not see gets its stream from the pump,
-- from seq 1 (migration 0010, queue_webhook_events). A data-modifying CTE
-- runs to completion whether or not it is referenced.
WITH hook AS (
    INSERT INTO webhooks (url, events, secret, created_by, changed_by, changed_at)
    VALUES ($1, $2::text[], $3, $4::jsonb, $4::jsonb, now())
    RETURNING id, url, events, created_at, disabled_at, disabled_reason, created_by,
              changed_by, changed_at
), streams AS (
    INSERT INTO webhook_streams (webhook_id, coupon_id, queued_seq, delivered_seq)
    SELECT hook.id, c.id, c.event_seq, c.event_seq FROM hook, coupons AS c
)
SELECT id, url, events, created_at, disabled_at, disabled_reason, 0 AS failures,
       NULL::text AS last_error, NULL::timestamptz AS last_error_at,
       NULL::timestamptz AS delivered_at, 0::bigint AS pending, 0::bigint AS backlog,
       NULL::timestamptz AS next_attempt_at, NULL::float8 AS lag_seconds,
       created_by::text, changed_by::text, changed_at
  FROM hook;

-- name: list_webhooks
-- A page of endpoints (ids after $1, at most $2; only endpoint $3 when it is
-- given) with their delivery state: failures is the longest run of failed
-- attempts of one undelivered event, last_error the latest failure's,
-- pending how many of its coupons have events still to deliver, backlog how
-- many events those are at most (of every type: queued_seq - delivered_seq),
-- next_attempt_at when the first of them is due, lag_seconds the age of the
-- oldest event not delivered yet ((coupon_id, seq) is the events' key).
WITH page AS (
    SELECT * FROM webhooks AS w
     WHERE w.id > $1 AND ($3::bigint IS NULL OR w.id = $3)
     ORDER BY w.id
     LIMIT $2
)
SELECT w.id, w.url, w.events, w.created_at, w.disabled_at, w.disabled_reason,
       coalesce(max(s.attempts), 0) AS failures,
       (array_agg(s.last_error ORDER BY s.last_error_at DESC NULLS LAST))[1] AS last_error,
       max(s.last_error_at) AS last_error_at,
       max(s.delivered_at) AS delivered_at,
       count(*) FILTER (WHERE s.queued_seq > s.delivered_seq) AS pending,
       coalesce(sum(s.queued_seq - s.delivered_seq)
                    FILTER (WHERE s.queued_seq > s.delivered_seq), 0)::bigint AS backlog,
       -- greatest() skips NULLs: the CASE keeps "nothing pending" NULL.
       CASE WHEN bool_or(s.queued_seq > s.delivered_seq)
            THEN greatest(min(s.next_attempt_at) FILTER (WHERE s.queued_seq > s.delivered_seq),
                          now()) END AS next_attempt_at,
       extract(epoch FROM now() - min(e.at))::float8 AS lag_seconds,
       w.created_by::text, w.changed_by::text, w.changed_at
  FROM page AS w
  LEFT JOIN webhook_streams AS s ON s.webhook_id = w.id
  LEFT JOIN events AS e
         ON s.queued_seq > s.delivered_seq AND e.coupon_id = s.coupon_id
        AND e.seq = s.delivered_seq + 1
 GROUP BY w.id, w.url, w.events, w.created_at, w.disabled_at, w.disabled_reason,
          w.created_by::text, w.changed_by::text, w.changed_at
 ORDER BY w.id;

-- name: enable_webhook
-- A disabled endpoint enabled again, its streams' failures forgotten and due
-- now; the pump goes on from where it stopped, so every event missed meanwhile
-- is delivered, in order. The streams' UPDATE reads the endpoint's: it runs
-- after the endpoint is locked, the pump's order (endpoint, then streams).
-- No row: no such endpoint. $2: who enabled it (changed_by).
WITH hook AS (
    UPDATE webhooks
       SET disabled_at = NULL, disabled_reason = NULL, changed_by = $2::jsonb,
           changed_at = now()
     WHERE id = $1
    RETURNING id
), streams AS (
    UPDATE webhook_streams AS s
       SET attempts = 0, failing_since = NULL, next_attempt_at = '-infinity'
      FROM hook
     WHERE s.webhook_id = hook.id
)
SELECT id FROM hook;

-- name: replay_webhook
-- Endpoint $1's streams rewound to their first event of its types with id at
-- least $2 and time at least $3, and never before the endpoint was
-- registered (created_at): they deliver from there again, in seq order. Each
-- rewound stream's lease is bumped, so a POST in flight records nothing and
-- cannot move the stream past the replay. The endpoint is locked first (the
-- pump's order); $4 is who replays (changed_by). Returns when the replay
-- starts and how many streams it rewound; no row: no such endpoint.
WITH hook AS (
    SELECT w.id, w.events, greatest(w.created_at, $3) AS since
      FROM webhooks AS w
     WHERE w.id = $1
       FOR NO KEY UPDATE
), changed AS (
    UPDATE webhooks AS w SET changed_by = $4::jsonb, changed_at = now()
      FROM hook
     WHERE w.id = hook.id
), first AS (
    SELECT e.coupon_id, min(e.seq) AS seq
      FROM hook
      JOIN events AS e ON e.type = ANY (hook.events) AND e.at >= hook.since AND e.id >= $2
     GROUP BY e.coupon_id
), rewound AS (
    UPDATE webhook_streams AS s
       SET delivered_seq = f.seq - 1, attempts = 0, failing_since = NULL,
           next_attempt_at = '-infinity', leased_until = NULL, lease = s.lease + 1
      FROM hook, first AS f
     WHERE s.webhook_id = hook.id AND s.coupon_id = f.coupon_id AND s.delivered_seq >= f.seq
    RETURNING s.coupon_id
)
SELECT hook.since, (SELECT count(*) FROM rewound) AS streams FROM hook;

-- name: delete_webhook
-- An endpoint and its streams (ON DELETE CASCADE); no row: no such endpoint.
-- A delivery in flight records nothing afterwards (its stream is gone).
DELETE FROM webhooks WHERE id = $1 RETURNING id;

-- name: rotate_webhook_secret
-- Endpoint $1 signs with secret $2 from now on, and with the one it replaces
-- for $3 more seconds (a rotation during another drops the oldest). Until
-- when the replaced one signs; no row: no such endpoint. $4: who rotated it.
UPDATE webhooks
   SET previous_secret = secret, secret = $2,
       previous_secret_until = now() + make_interval(secs => $3),
       changed_by = $4::jsonb, changed_at = now()
 WHERE id = $1
RETURNING previous_secret_until;

-- name: queue_webhook_events
-- The pump: the global feed's next pages turned into work of each enabled
-- endpoint's streams (the function: schema.sql).
SELECT queue_webhook_events($1);

-- name: lease_webhook_deliveries
-- Up to $1 due streams leased for $2 seconds, each with its next event (the
-- function: schema.sql). Nothing stays locked once this statement commits.
SELECT webhook_id, coupon_id, lease, url, secrets, attempts, queued_seq, event_id AS id,
       event_xid::text AS xid, coupon_name, seq, type, user_id, at, data::text AS data
  FROM lease_webhook_deliveries($1, $2);

-- name: webhook_delivered
-- Event $4 of stream ($1, $2) delivered under lease $3; the stream's next
-- event with the lease renewed for $5 seconds, if any (the function: schema.sql).
SELECT webhook_id, coupon_id, lease, url, secrets, attempts, queued_seq, event_id AS id,
       event_xid::text AS xid, coupon_name, seq, type, user_id, at, data::text AS data
  FROM webhook_delivered($1, $2, $3, $4, $5);

-- name: webhook_batch_events
-- A batch's events after the first: stream ($1, $2)'s events of its
-- endpoint's types after seq $3, in seq order, at most $4, read under the
-- stream's lease with no lock taken. A coupon's events are numbered under its
-- row lock, so any snapshot sees seq 1..n with no hole (migration 0010): a
-- batch never skips an event a later one would bring.
SELECT e.id, e.xid::text AS xid, e.coupon_name, e.seq, e.type, e.user_id, e.at,
       e.data::text AS data
  FROM webhooks AS w
  JOIN events AS e ON e.coupon_id = $2 AND e.seq > $3 AND e.type = ANY (w.events)
 WHERE w.id = $1
 ORDER BY e.seq
 LIMIT $4;

-- name: webhook_failed
-- A failed attempt of stream ($1, $2) under lease $3: error $4, next attempt
-- in $5 seconds, lease let go. How many attempts in a row have failed, and
-- for how long (seconds); no row: the lease was lost (nothing recorded).
UPDATE webhook_streams AS s
   SET attempts = s.attempts + 1, failing_since = coalesce(s.failing_since, now()),
       last_error = $4, last_error_at = now(),
       next_attempt_at = now() + make_interval(secs => $5), leased_until = NULL
 WHERE s.webhook_id = $1 AND s.coupon_id = $2 AND s.lease = $3
RETURNING s.attempts, extract(epoch FROM now() - s.failing_since)::float8 AS failing_for;

-- name: webhook_caught_up
-- A leased stream with nothing of its types left up to $4 (events removed
-- by hand): it is caught up; lease let go.
UPDATE webhook_streams AS s
   SET delivered_seq = greatest(s.delivered_seq, $4), leased_until = NULL
 WHERE s.webhook_id = $1 AND s.coupon_id = $2 AND s.lease = $3;

-- name: release_webhook_leases
-- Leases let go at shutdown (streams $1, coupons $2, leases $3), so another
-- deliverer takes them at once instead of when they run out.
UPDATE webhook_streams AS s
   SET leased_until = NULL
  FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(webhook_id, coupon_id, lease)
 WHERE s.webhook_id = r.webhook_id AND s.coupon_id = r.coupon_id AND s.lease = r.lease;

-- name: webhook_backlogs
-- Each enabled endpoint with work: events queued and not delivered (at most:
-- every type between the seqs) and the age of the oldest. Reads only streams
-- with work, through webhook_streams_due_idx's predicate.
SELECT s.webhook_id, sum(s.queued_seq - s.delivered_seq)::bigint AS backlog,
       coalesce(extract(epoch FROM now() - min(e.at)), 0)::float8 AS lag_seconds
  FROM webhook_streams AS s
  JOIN webhooks AS w ON w.id = s.webhook_id AND w.disabled_at IS NULL
  LEFT JOIN events AS e ON e.coupon_id = s.coupon_id AND e.seq = s.delivered_seq + 1
 WHERE s.queued_seq > s.delivered_seq
 GROUP BY s.webhook_id;

-- name: disable_webhook
-- An endpoint given up on: no more leases or pumping. Its own statement,
-- never with a stream's row lock held (the pump locks endpoint, then streams).
UPDATE webhooks SET disabled_at = now(), disabled_reason = $2
 WHERE id = $1 AND disabled_at IS NULL;
