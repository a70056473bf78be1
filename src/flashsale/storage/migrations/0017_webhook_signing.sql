-- Webhooks in the Standard Webhooks format (v1): a secret is "whsec_" and the
-- base64 of its key's bytes, and while a rotation lasts an endpoint has two
-- (the new one and the one it replaced, valid until previous_secret_until):
-- each delivery is signed with both.
--
-- Endpoints registered before keep their key: the bytes of the secret they
-- were given become the key, written here the standard way, so their
-- receivers verify with "whsec_" + base64(<the secret they know>) and the
-- deprecated Flashsale-Signature header, keyed with the same bytes, keeps
-- verifying as it did.
UPDATE webhooks
   SET secret = 'whsec_' || replace(encode(convert_to(secret, 'UTF8'), 'base64'), E'\n', '');

ALTER TABLE webhooks
    ADD COLUMN previous_secret       text,
    ADD COLUMN previous_secret_until timestamptz;

-- The secrets a delivery is signed with now: the current one first.
CREATE FUNCTION webhook_secrets(p_secret text, p_previous text, p_until timestamptz)
RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_until > now() THEN ARRAY[p_secret, p_previous] ELSE ARRAY[p_secret] END
$$;

-- The two functions that hand a deliverer its work now return the secrets
-- (a function's result type cannot be changed in place: dropped, created).
DROP FUNCTION lease_webhook_deliveries(integer, double precision);
DROP FUNCTION webhook_delivered(bigint, bigint, bigint, bigint, double precision);

-- As in 0010, with every secret valid now in place of the one secret.
CREATE FUNCTION lease_webhook_deliveries(p_limit integer, p_lease double precision)
RETURNS TABLE (webhook_id bigint, coupon_id bigint, lease bigint, url text, secrets text[],
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
    SELECT l.webhook_id, l.coupon_id, l.lease, w.url,
           webhook_secrets(w.secret, w.previous_secret, w.previous_secret_until),
           l.attempts, l.queued_seq, e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id,
           e.at, e.data
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

-- As in 0010, with every secret valid now in place of the one secret.
CREATE FUNCTION webhook_delivered(p_webhook bigint, p_coupon bigint, p_lease bigint,
                                  p_seq bigint, p_renew double precision)
RETURNS TABLE (webhook_id bigint, coupon_id bigint, lease bigint, url text, secrets text[],
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
        SELECT s.webhook_id, s.coupon_id, s.lease, w.url,
               webhook_secrets(w.secret, w.previous_secret, w.previous_secret_until),
               s.attempts, s.queued_seq, e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id,
               e.at, e.data
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
