-- After the sale: a ticket is redeemed at checkout and restored when the order is cancelled; an
-- unpaid or fraudulent winner's ticket goes back to the pool; a user's tickets are listed newest first.
--
-- Every change keeps the rules of issuance. A return takes the coupon's row lock first, as issuance
-- does, and moves issued_count down in the same transaction, so the counter equals the tickets held
-- at every commit; the ticket gets a fresh code, so the old one is worthless. A returned ticket
-- makes a sold-out coupon open again, which coupons_changed_notify (0002) tells every instance.
-- Redemption touches only the ticket's row, whose lock orders redemptions, restores and returns of
-- one ticket; a redeemed ticket cannot be returned.

ALTER TABLE coupons ADD COLUMN redeem_until timestamptz;

ALTER TABLE coupon_tickets
    ADD COLUMN redeemed_at timestamptz,
    ADD COLUMN order_id text,
    ADD CONSTRAINT coupon_tickets_redeemed_together CHECK ((redeemed_at IS NULL) = (order_id IS NULL)),
    ADD CONSTRAINT coupon_tickets_redeemed_when_held CHECK (redeemed_at IS NULL OR user_id IS NOT NULL);

-- GET /v1/users/{user_id}/tickets: a user's tickets newest first, read backwards from this index.
-- (On a database distributed by coupon this reads every shard: docs/scaling.md.)
CREATE INDEX coupon_tickets_by_user ON coupon_tickets (user_id, issued_at, coupon_id) WHERE user_id IS NOT NULL;

-- Redeems the user's ticket for an order. outcome: redeemed, redeemed_before (the same order again),
-- already_redeemed (another order), redemption_closed (at or after redeem_until, by the database's
-- clock), ticket_not_found, coupon_not_found. The ticket's columns come with every outcome that has one.
CREATE FUNCTION redeem_ticket(p_coupon_id bigint, p_user_id text, p_order_id text)
RETURNS TABLE (outcome text, number int, code text, issued_at timestamptz, redeemed_at timestamptz, order_id text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_ticket coupon_tickets%ROWTYPE;
    v_until  timestamptz;
    v_now    timestamptz;
BEGIN
    SELECT * INTO v_ticket FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT CASE WHEN EXISTS (SELECT 1 FROM coupons AS c WHERE c.id = p_coupon_id)
                                 THEN 'ticket_not_found' ELSE 'coupon_not_found' END,
                            NULL::int, NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF v_ticket.redeemed_at IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.order_id = p_order_id THEN 'redeemed_before' ELSE 'already_redeemed' END,
                            v_ticket.number, v_ticket.code, v_ticket.issued_at, v_ticket.redeemed_at, v_ticket.order_id;
        RETURN;
    END IF;
    SELECT c.redeem_until INTO v_until FROM coupons AS c WHERE c.id = p_coupon_id;
    v_now := clock_timestamp();
    IF v_until IS NOT NULL AND v_now >= v_until THEN
        RETURN QUERY SELECT 'redemption_closed', v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY
        UPDATE coupon_tickets AS t SET redeemed_at = v_now, order_id = p_order_id
        WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number
        RETURNING 'redeemed'::text, t.number, t.code, t.issued_at, t.redeemed_at, t.order_id;
END;
$$;

-- Undoes a redemption (the order was cancelled). outcome: restored, not_redeemed (nothing to undo:
-- answered the same way), ticket_not_found, coupon_not_found.
CREATE FUNCTION restore_ticket(p_coupon_id bigint, p_user_id text)
RETURNS TABLE (outcome text, number int, code text, issued_at timestamptz)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_ticket coupon_tickets%ROWTYPE;
BEGIN
    SELECT * INTO v_ticket FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT CASE WHEN EXISTS (SELECT 1 FROM coupons AS c WHERE c.id = p_coupon_id)
                                 THEN 'ticket_not_found' ELSE 'coupon_not_found' END,
                            NULL::int, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF v_ticket.redeemed_at IS NOT NULL THEN
        UPDATE coupon_tickets AS t SET redeemed_at = NULL, order_id = NULL
        WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    END IF;
    RETURN QUERY SELECT CASE WHEN v_ticket.redeemed_at IS NULL THEN 'not_redeemed' ELSE 'restored' END,
                        v_ticket.number, v_ticket.code, v_ticket.issued_at;
END;
$$;

-- Returns the user's ticket to the pool: free again, with a fresh code, and the counter one lower.
-- outcome: returned, ticket_redeemed, ticket_not_found, coupon_not_found.
CREATE FUNCTION return_ticket(p_coupon_id bigint, p_user_id text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_number   int;
    v_redeemed timestamptz;
    v_code     text;
BEGIN
    -- Issuers of the coupon queue here too: the free tickets and the counter move together.
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 'coupon_not_found';
    END IF;
    SELECT t.number, t.redeemed_at INTO v_number, v_redeemed FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'ticket_not_found';
    END IF;
    IF v_redeemed IS NOT NULL THEN
        RETURN 'ticket_redeemed';
    END IF;
    -- The fresh code is drawn first: a distributed UPDATE (Citus, 0007) may not call a volatile function.
    v_code := replace(gen_random_uuid()::text, '-', '');
    UPDATE coupon_tickets AS t
    SET user_id = NULL, issued_at = NULL, code = v_code
    WHERE t.coupon_id = p_coupon_id AND t.number = v_number;
    UPDATE coupons AS c SET issued_count = c.issued_count - 1 WHERE c.id = p_coupon_id;
    RETURN 'returned';
END;
$$;
