-- A restore names the order it undoes. Without it a late cancel of one order could undo another
-- order's redemption, and one ticket would pay for two orders. outcome: restored, not_redeemed
-- (nothing to undo: answered the same way), other_order (redeemed for another order: nothing
-- changes), ticket_not_found, coupon_not_found.

DROP FUNCTION restore_ticket(bigint, text);

CREATE FUNCTION restore_ticket(p_coupon_id bigint, p_user_id text, p_order_id text)
RETURNS TABLE (outcome text, number int, code text, issued_at timestamptz, redeemed_at timestamptz, order_id text)
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
                            NULL::int, NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF v_ticket.redeemed_at IS NULL THEN
        RETURN QUERY SELECT 'not_redeemed', v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF v_ticket.order_id IS DISTINCT FROM p_order_id THEN
        RETURN QUERY SELECT 'other_order', v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            v_ticket.redeemed_at, v_ticket.order_id;
        RETURN;
    END IF;
    UPDATE coupon_tickets AS t SET redeemed_at = NULL, order_id = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    RETURN QUERY SELECT 'restored', v_ticket.number, v_ticket.code, v_ticket.issued_at,
                        NULL::timestamptz, NULL::text;
END;
$$;

-- On a Citus cluster (0007) the function runs on the coupon's worker, as the one it replaces did.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('restore_ticket(bigint,text,text)', 'p_coupon_id', colocate_with => 'coupons');
    END IF;
END;
$$;
