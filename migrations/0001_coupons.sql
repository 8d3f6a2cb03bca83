-- Coupons and their pre-generated tickets. The functions that write them live in migrations/functions/.
--
-- Every primary key and unique constraint includes coupon_id, so the schema can be distributed by
-- coupon_id (Citus) with coupons and coupon_tickets colocated.

CREATE TABLE coupons (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL,
    quantity     int         NOT NULL,
    issued_count int         NOT NULL DEFAULT 0,
    starts_at    timestamptz NULL,
    ends_at      timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_issued_within_quantity CHECK (0 <= issued_count AND issued_count <= quantity),
    CONSTRAINT coupons_window_ordered CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at)
);

CREATE TABLE coupon_tickets (
    coupon_id bigint      NOT NULL REFERENCES coupons (id),
    number    int         NOT NULL,
    code      text        NOT NULL,
    user_id   text        NULL,
    issued_at timestamptz NULL,
    PRIMARY KEY (coupon_id, number),
    CONSTRAINT coupon_tickets_code_unique UNIQUE (coupon_id, code),
    CONSTRAINT coupon_tickets_user_unique UNIQUE (coupon_id, user_id),
    CONSTRAINT coupon_tickets_issued_together CHECK ((user_id IS NULL) = (issued_at IS NULL))
);

-- Free tickets in claim order: the claim reads this index, not the claimed rows before it. Keyed on
-- issued_at (NULL exactly when user_id is) so that no other index can answer "free": B-trees index
-- NULLs, and without statistics on fresh rows the planner would otherwise read every free ticket
-- of the coupon through coupon_tickets_user_unique and sort them.
CREATE INDEX coupon_tickets_free ON coupon_tickets (coupon_id, number) WHERE issued_at IS NULL;
