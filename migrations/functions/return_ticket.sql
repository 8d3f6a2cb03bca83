-- Returns the user's ticket to the pool: free again, with a fresh code, and the counter one lower.
-- outcome: returned, ticket_redeemed, ticket_held (an order's live hold: the checkout is paying with
-- it), ticket_not_found, coupon_not_found; hold_lapsed when a lapsed hold was cleared on the way.
--
-- A return takes the coupon's row lock first, as issuance does, and moves issued_count down in the
-- same transaction, so the counter equals the tickets held at every commit; the fresh code makes the
-- old one worthless, and a sold-out coupon open again tells every instance (coupon_events).
-- (Until 0010 it answered the outcome alone.)
DROP FUNCTION IF EXISTS return_ticket(bigint, text);

CREATE OR REPLACE FUNCTION return_ticket(p_coupon_id bigint, p_user_id text)
RETURNS TABLE (outcome text, hold_lapsed boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    v_number   int;
    v_redeemed timestamptz;
    v_hold     timestamptz;
    v_code     text;
BEGIN
    -- Issuers of the coupon queue here too: the free tickets and the counter move together.
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'coupon_not_found', false;
        RETURN;
    END IF;
    SELECT t.number, t.redeemed_at, t.hold_until INTO v_number, v_redeemed, v_hold FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'ticket_not_found', false;
        RETURN;
    END IF;
    IF v_redeemed IS NOT NULL THEN
        RETURN QUERY SELECT 'ticket_redeemed', false;
        RETURN;
    END IF;
    IF v_hold > clock_timestamp() THEN
        RETURN QUERY SELECT 'ticket_held', false;
        RETURN;
    END IF;
    -- The fresh code (carrying the coupon, as add_coupon_tickets draws them) is drawn first: a
    -- distributed UPDATE (Citus, 0007) may not call a volatile function.
    v_code := p_coupon_id || '-' || replace(gen_random_uuid()::text, '-', '');
    UPDATE coupon_tickets AS t
    SET user_id = NULL, issued_at = NULL, code = v_code, order_id = NULL, hold_until = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_number;
    UPDATE coupons AS c SET issued_count = c.issued_count - 1 WHERE c.id = p_coupon_id;
    RETURN QUERY SELECT 'returned', v_hold IS NOT NULL;
END;
$$;

-- On a Citus cluster (0007) it runs on the worker that holds the coupon.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('return_ticket(bigint,text)', 'p_coupon_id', colocate_with => 'coupons');
    END IF;
END;
$$;
