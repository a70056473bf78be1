-- Coupons and their claims. The invariants live here, not only in code:
--   * stock is bounded: 0 <= remaining_amount <= amount (CHECKs below);
--   * one claim per user per coupon (primary key of claims);
--   * amount - remaining_amount = number of claims, because only the
--     statement-level triggers of 0002 move the stock, by exactly the number
--     of claim rows each statement inserted or deleted.
CREATE TABLE coupons (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL,
    amount           integer     NOT NULL,
    remaining_amount integer     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_name_key UNIQUE (name),
    -- Target of the claims foreign key, which carries the name along.
    CONSTRAINT coupons_id_name_key UNIQUE (id, name),
    CONSTRAINT coupons_name_format CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    CONSTRAINT coupons_amount_positive CHECK (amount BETWEEN 1 AND 1000000000),
    CONSTRAINT coupons_remaining_not_negative CHECK (remaining_amount >= 0),
    CONSTRAINT coupons_remaining_within_amount CHECK (remaining_amount <= amount)
);

CREATE TABLE claims (
    -- Claim order: identities are handed out in insertion order.
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    coupon_id   bigint      NOT NULL,
    coupon_name text        NOT NULL,
    user_id     text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT claims_pkey PRIMARY KEY (coupon_id, user_id),
    -- The original design keys claims by coupon name; we keep the name and
    -- tie it to the coupon's identity so the two can never disagree.
    CONSTRAINT claims_coupon_fkey FOREIGN KEY (coupon_id, coupon_name)
        REFERENCES coupons (id, name) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT claims_user_id_format CHECK (
        char_length(user_id) BETWEEN 1 AND 128 AND user_id !~ '[[:cntrl:]]'
    )
);

-- Claimers of one coupon in claim order, without a sort.
CREATE UNIQUE INDEX claims_coupon_order_idx ON claims (coupon_id, id);
