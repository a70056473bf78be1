-- Idempotency keys scoped to their owner (issue 24): the HTTP layer stores a
-- key as a 32-character digest of its owner (the operator's or backend's
-- token name, an end user's sub, an anonymous claim's user), a colon, then
-- the client's key of 1-255 characters (http/idempotency.py owned_key). One
-- owner's key so never answers nor blocks another's request, and the claim
-- functions, which compare keys as opaque text, keep their one round trip.
-- Keys stored before this migration have no owner's digest: no request finds
-- them again, and the purge deletes them once IDEMPOTENCY_TTL old.
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_key_length,
    ADD CONSTRAINT idempotency_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 288);

-- Who did it (issue 24): an admin change's events name the credential that
-- made it (data.actor: the caller's kind and the token's name, never the
-- token). The service names it in the change's transaction (queries.sql
-- act_as, a transaction-local setting); these triggers read it.
CREATE FUNCTION event_actor_data() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coalesce(current_setting('flashsale.actor', true), '') = ''
                THEN '{}'::jsonb
                ELSE jsonb_build_object('actor', current_setting('flashsale.actor', true)::jsonb)
           END
$$;

CREATE OR REPLACE FUNCTION coupons_record_creation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, at, data)
    SELECT n.event_xid, n.id, n.name, n.event_seq, 'coupon_created', n.created_at,
           jsonb_build_object('amount', n.amount, 'remaining_amount', n.remaining_amount,
                              'starts_at', n.starts_at, 'ends_at', n.ends_at,
                              'active', n.active, 'hold_seconds', n.hold_seconds)
           || event_actor_data()
      FROM new_coupons AS n;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION coupons_record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_data jsonb := '{}';
BEGIN
    IF NEW.amount IS DISTINCT FROM OLD.amount THEN
        v_data := v_data || jsonb_build_object('amount', NEW.amount,
                                               'remaining_amount', NEW.remaining_amount);
    END IF;
    IF NEW.starts_at IS DISTINCT FROM OLD.starts_at THEN
        v_data := v_data || jsonb_build_object('starts_at', NEW.starts_at);
    END IF;
    IF NEW.ends_at IS DISTINCT FROM OLD.ends_at THEN
        v_data := v_data || jsonb_build_object('ends_at', NEW.ends_at);
    END IF;
    IF NEW.active IS DISTINCT FROM OLD.active THEN
        v_data := v_data || jsonb_build_object('active', NEW.active);
    END IF;
    IF NEW.hold_seconds IS DISTINCT FROM OLD.hold_seconds THEN
        v_data := v_data || jsonb_build_object('hold_seconds', NEW.hold_seconds);
    END IF;
    NEW.event_seq := NEW.event_seq + 1;
    NEW.event_xid := greatest(NEW.event_xid, pg_current_xact_id());
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, at, data)
    VALUES (NEW.event_xid, NEW.id, NEW.name, NEW.event_seq, 'coupon_changed',
            clock_timestamp(), v_data || event_actor_data());
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION claims_record_redeems() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH r AS (
        SELECT k.id, k.coupon_id, k.coupon_name, k.user_id, k.redeemed_at
          FROM new_claims AS k
          JOIN old_claims AS o ON o.coupon_id = k.coupon_id AND o.user_id = k.user_id
         WHERE o.redeemed_at IS NULL AND k.redeemed_at IS NOT NULL
    ), counts AS (
        SELECT coupon_id, count(*) AS redeemed FROM r GROUP BY coupon_id
    ), moved AS (
        UPDATE coupons AS c
           SET event_seq = c.event_seq + counts.redeemed,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM counts
         WHERE c.id = counts.coupon_id
        RETURNING c.id, c.event_seq - counts.redeemed AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, r.coupon_id, r.coupon_name,
           m.base + row_number() OVER (PARTITION BY r.coupon_id ORDER BY r.id),
           'redeemed', r.user_id, r.redeemed_at, event_actor_data()
      FROM r
      JOIN moved AS m ON m.id = r.coupon_id;
    RETURN NULL;
END
$$;

-- Webhook changes have no events: the endpoint keeps who registered it and
-- who made its last change (GET /api/webhooks shows both); the service log
-- has every change, deletions included.
ALTER TABLE webhooks
    ADD COLUMN created_by jsonb,
    ADD COLUMN changed_by jsonb,
    ADD COLUMN changed_at timestamptz;
