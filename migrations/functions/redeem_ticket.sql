-- Redeems the user's ticket for an order. outcome: redeemed, redeemed_before (the same order again),
-- already_redeemed (another order), redemption_closed (at or after redeem_until, by the database's
-- clock), ticket_not_found, coupon_not_found. The ticket's columns come with every outcome that has one.
CREATE OR REPLACE FUNCTION redeem_ticket(p_coupon_id bigint, p_user_id text, p_order_id text)
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

-- On a Citus cluster (0007) it runs on the worker that holds the coupon.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('redeem_ticket(bigint,text,text)', 'p_coupon_id', colocate_with => 'coupons');
    END IF;
END;
$$;
