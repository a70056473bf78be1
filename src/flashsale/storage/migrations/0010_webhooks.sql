-- Webhooks: endpoints that get every event of the types they chose, signed,
-- at least once, in seq order per coupon (service/webhooks.py delivers).
--
-- Delivery state is one row per (endpoint, coupon): a stream. The events
-- table is the queue; a stream only says how far its endpoint got in one
-- coupon's events (delivered_seq) and how far the feed says there is work
-- (queued_seq). A coupon's events are numbered under its row lock, so the
-- events of one coupon a snapshot sees are always seq 1..n with no hole: the
-- next event of a stream is simply the first of its types after delivered_seq.
--
-- No transaction stays open during a POST (it would hold back every
-- snapshot's xmin, the events feed's horizon and vacuum): a deliverer leases a
-- stream (leased_until, lease) in one short statement, POSTs, and records the
-- outcome in another, which counts only while it still holds that lease. A
-- deliverer that crashed leaves a lease that runs out; the POST is retried.

CREATE TABLE webhooks (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text        NOT NULL,
    events          text[]      NOT NULL,
    secret          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text,
    -- Where queue_webhook_events is in the global feed, ordered by (xid, id):
    -- rows after this pair. It starts at the registering statement's xmin:
    -- every transaction that commits after that snapshot was in progress or
    -- not yet started when it was taken, so its xid is at least that xmin.
    feed_xid        xid8        NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot()),
    feed_id         bigint      NOT NULL DEFAULT 0,
    CONSTRAINT webhooks_events_known CHECK (
        events <@ ARRAY['coupon_created', 'coupon_changed', 'claimed', 'released', 'expired',
                        'redeemed']::text[] AND cardinality(events) > 0)
);

CREATE TABLE webhook_streams (
    webhook_id      bigint      NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    coupon_id       bigint      NOT NULL,  -- no foreign key: events outlive their coupon
    queued_seq      bigint      NOT NULL,  -- the coupon's last wanted event the feed showed
    delivered_seq   bigint      NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,  -- failed attempts of the next event
    failing_since   timestamptz,                     -- the first of them
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    leased_until    timestamptz,
    lease           bigint      NOT NULL DEFAULT 0,  -- bumped by each lease: who may record
    last_error      text,
    last_error_at   timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (webhook_id, coupon_id)
);
-- The streams with work, by when they are due (a predicate on two columns is
-- a valid partial index; caught-up streams leave it).
CREATE INDEX webhook_streams_due_idx ON webhook_streams (next_attempt_at)
    WHERE queued_seq > delivered_seq;

-- The pump: each enabled endpoint's next page of the global feed turned into
-- queued_seq of its streams (a stream per coupon, created on its first event).
-- A page is what events_page shows: (xid, id) after the cursor and xid below
-- pg_snapshot_xmin(pg_current_snapshot()), so no row can still appear behind
-- it. Each endpoint is taken FOR NO KEY UPDATE SKIP LOCKED: concurrent pumps
-- (every worker of every instance) split the endpoints and never read one
-- page twice; the lock conflicts with a DELETE and a disabling UPDATE of the
-- endpoint but not with the foreign-key checks of stream inserts. Returns the
-- fullest page's size (the caller pumps again while pages come back full).
CREATE FUNCTION queue_webhook_events(p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_hook record;
    v_read integer;
    v_fullest integer := 0;
BEGIN
    FOR v_hook IN
        SELECT w.id, w.events, w.feed_xid, w.feed_id
          FROM webhooks AS w
         WHERE w.disabled_at IS NULL
         ORDER BY w.id
           FOR NO KEY UPDATE SKIP LOCKED
    LOOP
        WITH page AS (
            SELECT e.xid, e.id, e.coupon_id, e.seq, e.type
              FROM events AS e
             WHERE (e.xid, e.id) > (v_hook.feed_xid, v_hook.feed_id)
               AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY e.xid, e.id
             LIMIT p_limit
        ), wanted AS (
            SELECT p.coupon_id, max(p.seq) AS seq
              FROM page AS p
             WHERE p.type = ANY (v_hook.events)
             GROUP BY p.coupon_id
        ), queued AS (
            -- A new stream starts at seq 0: its coupon had no stream when the
            -- endpoint registered (register_webhook made one for every coupon
            -- it saw), so the coupon was created after that snapshot.
            INSERT INTO webhook_streams AS s (webhook_id, coupon_id, queued_seq)
            SELECT v_hook.id, w.coupon_id, w.seq FROM wanted AS w ORDER BY w.coupon_id
            ON CONFLICT (webhook_id, coupon_id)
               DO UPDATE SET queued_seq = greatest(s.queued_seq, excluded.queued_seq)
        ), last AS (
            SELECT p.xid, p.id, count(*) OVER () AS read
              FROM page AS p
             ORDER BY p.xid DESC, p.id DESC
             LIMIT 1
        )
        UPDATE webhooks AS w
           SET feed_xid = last.xid, feed_id = last.id
          FROM last
         WHERE w.id = v_hook.id
        RETURNING last.read INTO v_read;
        v_fullest := greatest(v_fullest, coalesce(v_read, 0));
    END LOOP;
    RETURN v_fullest;
END
$$;

-- Up to p_limit due streams leased for p_lease seconds, each with its next
-- event (NULL when there is none: the stream is caught up). FOR UPDATE SKIP
-- LOCKED: a stream another deliverer is leasing right now is skipped, and a
-- row that changed since the snapshot is re-checked at its newest version
-- (READ COMMITTED), so a lease taken meanwhile is seen.
CREATE FUNCTION lease_webhook_deliveries(p_limit integer, p_lease double precision)
RETURNS TABLE (webhook_id bigint, coupon_id bigint, lease bigint, url text, secret text,
               attempts integer, queued_seq bigint, event_id bigint, event_xid xid8,
               coupon_name text, seq bigint, type text, user_id text, at timestamptz,
               data jsonb)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT s.webhook_id, s.coupon_id
          FROM webhook_streams AS s
          JOIN webhooks AS w ON w.id = s.webhook_id
         WHERE s.queued_seq > s.delivered_seq
           AND s.next_attempt_at <= now()
           AND (s.leased_until IS NULL OR s.leased_until <= now())
           AND w.disabled_at IS NULL
         ORDER BY s.next_attempt_at
         LIMIT p_limit
           FOR UPDATE OF s SKIP LOCKED
    ), leased AS (
        UPDATE webhook_streams AS s
           SET leased_until = now() + make_interval(secs => p_lease), lease = s.lease + 1
          FROM due
         WHERE s.webhook_id = due.webhook_id AND s.coupon_id = due.coupon_id
        RETURNING s.webhook_id, s.coupon_id, s.lease, s.attempts, s.delivered_seq, s.queued_seq
    )
    SELECT l.webhook_id, l.coupon_id, l.lease, w.url, w.secret, l.attempts, l.queued_seq,
           e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id, e.at, e.data
      FROM leased AS l
      JOIN webhooks AS w ON w.id = l.webhook_id
      LEFT JOIN LATERAL (
            SELECT e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id, e.at, e.data
              FROM events AS e
             WHERE e.coupon_id = l.coupon_id AND e.seq > l.delivered_seq
               AND e.type = ANY (w.events)
             ORDER BY e.seq
             LIMIT 1
      ) AS e ON true
$$;

-- Event p_seq of a leased stream delivered (2xx). Counts only under the same
-- lease and moving forward (a deliverer whose lease ran out and was taken
-- over records nothing). Returns the stream's next event with the lease
-- renewed, so a busy coupon's events flow without a new lease each; no row
-- when the lease was lost, the stream is caught up or its endpoint was
-- disabled meanwhile (lease let go).
CREATE FUNCTION webhook_delivered(p_webhook bigint, p_coupon bigint, p_lease bigint,
                                  p_seq bigint, p_renew double precision)
RETURNS TABLE (webhook_id bigint, coupon_id bigint, lease bigint, url text, secret text,
               attempts integer, queued_seq bigint, event_id bigint, event_xid xid8,
               coupon_name text, seq bigint, type text, user_id text, at timestamptz,
               data jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_events text[];
BEGIN
    UPDATE webhook_streams AS s
       SET delivered_seq = p_seq, attempts = 0, failing_since = NULL,
           next_attempt_at = '-infinity', delivered_at = now(),
           leased_until = now() + make_interval(secs => p_renew)
      FROM webhooks AS w
     WHERE s.webhook_id = p_webhook AND s.coupon_id = p_coupon AND s.lease = p_lease
       AND s.delivered_seq < p_seq AND w.id = s.webhook_id
    RETURNING w.events INTO v_events;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT s.webhook_id, s.coupon_id, s.lease, w.url, w.secret, s.attempts, s.queued_seq,
               e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id, e.at, e.data
          FROM webhook_streams AS s
          JOIN webhooks AS w ON w.id = s.webhook_id
          JOIN LATERAL (
                SELECT e.* FROM events AS e
                 WHERE e.coupon_id = p_coupon AND e.seq > p_seq AND e.type = ANY (v_events)
                 ORDER BY e.seq
                 LIMIT 1
          ) AS e ON true
         WHERE s.webhook_id = p_webhook AND s.coupon_id = p_coupon AND w.disabled_at IS NULL;
    IF NOT FOUND THEN
        UPDATE webhook_streams AS s SET leased_until = NULL
         WHERE s.webhook_id = p_webhook AND s.coupon_id = p_coupon AND s.lease = p_lease;
    END IF;
END
$$;
