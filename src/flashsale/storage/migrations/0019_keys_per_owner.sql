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
