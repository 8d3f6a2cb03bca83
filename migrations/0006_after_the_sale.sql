-- After the sale: a ticket is redeemed at checkout and restored when the order is cancelled; an
-- unpaid or fraudulent winner's ticket goes back to the pool; a user's tickets are listed newest first.
-- The columns and the index here; the rules in migrations/functions/ (redeem_ticket, restore_ticket,
-- return_ticket). A redeemed ticket holds its order, and only a held ticket can be redeemed.

ALTER TABLE coupons ADD COLUMN redeem_until timestamptz;

ALTER TABLE coupon_tickets
    ADD COLUMN redeemed_at timestamptz,
    ADD COLUMN order_id text,
    ADD CONSTRAINT coupon_tickets_redeemed_together CHECK ((redeemed_at IS NULL) = (order_id IS NULL)),
    ADD CONSTRAINT coupon_tickets_redeemed_when_held CHECK (redeemed_at IS NULL OR user_id IS NOT NULL);

-- GET /v1/users/{user_id}/tickets: a user's tickets newest first, read backwards from this index.
-- (On a database distributed by coupon this reads every shard: docs/scaling.md.)
CREATE INDEX coupon_tickets_by_user ON coupon_tickets (user_id, issued_at, coupon_id) WHERE user_id IS NOT NULL;
