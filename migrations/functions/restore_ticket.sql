-- Undoes an order's hold or redemption of a ticket, and no other order's: a late cancel of one order
-- must not free a ticket another order holds or paid with. The ticket is found as redeem_ticket finds
-- it (the user's, or by its code). outcome: restored, not_redeemed (no order holds it, or its hold
-- has lapsed: nothing to undo, answered the same way), other_order (held or redeemed for another
-- order: nothing changes), ticket_not_found, coupon_not_found. A lapsed hold is cleared and reported
-- (hold_lapsed), as in redeem_ticket.

-- (Until 0010 it took the user alone; until 0008 no order: those signatures are gone.)
DROP FUNCTION IF EXISTS restore_ticket(bigint, text);
DROP FUNCTION IF EXISTS restore_ticket(bigint, text, text);

CREATE OR REPLACE FUNCTION restore_ticket(p_coupon_id bigint, p_user_id text, p_code text, p_order_id text)
RETURNS TABLE (outcome text, hold_lapsed boolean, user_id text, number int, code text, issued_at timestamptz,
               redeemed_at timestamptz, order_id text, hold_until timestamptz)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_ticket coupon_tickets%ROWTYPE;
    v_lapsed boolean := false;
BEGIN
    v_ticket := locked_ticket(p_coupon_id, p_user_id, p_code);
    IF v_ticket.number IS NULL THEN
        RETURN QUERY SELECT missing_ticket(p_coupon_id, p_code), false, NULL::text, NULL::int, NULL::text,
                            NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF v_ticket.hold_until <= clock_timestamp() THEN
        v_ticket.order_id := NULL;
        v_ticket.hold_until := NULL;
        v_lapsed := true;
    ELSIF v_ticket.order_id IS DISTINCT FROM p_order_id THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.order_id IS NULL THEN 'not_redeemed' ELSE 'other_order' END,
                            false, v_ticket.user_id, v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            v_ticket.redeemed_at, v_ticket.order_id, v_ticket.hold_until;
        RETURN;
    END IF;
    UPDATE coupon_tickets AS t SET redeemed_at = NULL, order_id = NULL, hold_until = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    RETURN QUERY SELECT CASE WHEN v_lapsed THEN 'not_redeemed' ELSE 'restored' END, v_lapsed,
                        v_ticket.user_id, v_ticket.number, v_ticket.code, v_ticket.issued_at,
                        NULL::timestamptz, NULL::text, NULL::timestamptz;
END;
$$;

-- On a Citus cluster (0007) it runs on the worker that holds the coupon.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('restore_ticket(bigint,text,text,text)', 'p_coupon_id',
                                            colocate_with => 'coupons');
    END IF;
END;
$$;
