-- Checkout by code: a ticket found by its code, held for an order until an instant, confirmed or
-- lapsing by itself. The columns, constraints and index here; the rules in migrations/functions/
-- (redeem_ticket, restore_ticket, return_ticket, coupon_ticket_states).
--
-- A ticket's order is either held (hold_until set, no redeemed_at) or redeemed (redeemed_at set, no
-- hold_until); a hold whose hold_until has passed on the database's clock has lapsed and reads as
-- no order at all, though its columns stay until the next request about that ticket clears them.
ALTER TABLE coupon_tickets
    ADD COLUMN hold_until timestamptz,
    DROP CONSTRAINT coupon_tickets_redeemed_together,
    DROP CONSTRAINT coupon_tickets_redeemed_when_held,
    ADD CONSTRAINT coupon_tickets_ordered_once CHECK (
        (order_id IS NULL) = (redeemed_at IS NULL AND hold_until IS NULL) AND (redeemed_at IS NULL OR hold_until IS NULL)),
    ADD CONSTRAINT coupon_tickets_ordered_when_held CHECK (order_id IS NULL OR user_id IS NOT NULL);

-- Codes carry their coupon from now on (`<coupon id>-<32 hex digits>`, add_coupon_tickets), so a
-- lookup reads the (coupon_id, code) index on the coupon's own shard. Codes drawn before are 32 hex
-- digits alone; this index finds them. Only those rows have entries: a ticket of a new coupon adds
-- none, on creation or on any change.
CREATE INDEX coupon_tickets_bare_code ON coupon_tickets (code) WHERE code NOT LIKE '%-%';
