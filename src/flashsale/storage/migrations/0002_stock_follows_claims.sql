-- The stock counter follows the claims table, whoever writes it (the claim
-- engine, an operator fixing data by hand, a cascade from a deleted coupon).
-- Statement-level triggers with transition tables cost one UPDATE per
-- statement, so a batch of 500 claims moves the counter once. If a writer
-- inserts more claims than there is stock, coupons_remaining_not_negative
-- fails the whole statement: an oversell becomes an error, never a row.
CREATE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET remaining_amount = c.remaining_amount - n.taken
      FROM (SELECT coupon_id, count(*) AS taken FROM new_claims GROUP BY coupon_id) AS n
     WHERE c.id = n.coupon_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION claims_return_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET remaining_amount = c.remaining_amount + o.returned
      FROM (SELECT coupon_id, count(*) AS returned FROM old_claims GROUP BY coupon_id) AS o
     WHERE c.id = o.coupon_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER claims_take_stock
    AFTER INSERT ON claims
    REFERENCING NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_take_stock();

CREATE TRIGGER claims_return_stock
    AFTER DELETE ON claims
    REFERENCING OLD TABLE AS old_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_return_stock();

-- Moving a claim to another coupon or user would dodge both triggers.
CREATE FUNCTION claims_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'claims are immutable: delete and insert instead'
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER claims_forbid_update
    BEFORE UPDATE OF coupon_id, user_id ON claims
    FOR EACH ROW EXECUTE FUNCTION claims_forbid_update();
