-- Undoes an order's hold or redemption of a ticket, and no other order's: a late cancel of one order
-- must not free a ticket another order holds or paid with. The ticket is found and locked as
-- redeem_ticket finds it (ticket_of: the user's, or by its code). outcome: restored, not_redeemed (no
-- order holds it, or its hold has lapsed: nothing to undo, answered the same way), other_order (held
-- or redeemed for another order: nothing changes), ticket_not_found, coupon_not_found; then the ticket
-- after the call, one ticket_answer (migrations/0011). A restore writes the event ticket.restored.

-- (Until 0010 it took the user alone; until 0008 no order; an earlier version answered other columns.)
DROP FUNCTION IF EXISTS restore_ticket(bigint, text);
DROP FUNCTION IF EXISTS restore_ticket(bigint, text, text);
DROP FUNCTION IF EXISTS restore_ticket(bigint, text, text, text);

CREATE FUNCTION restore_ticket(p_coupon_id bigint, p_user_id text, p_code text, p_order_id text)
RETURNS SETOF ticket_answer
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket coupon_ticket_states%ROWTYPE;
BEGIN
    v_ticket := ticket_of(p_coupon_id, p_user_id, p_code, true);
    IF v_ticket.number IS NULL THEN
        RETURN QUERY SELECT missing_ticket(p_coupon_id, p_code), (v_ticket).*;
        RETURN;
    END IF;
    IF v_ticket.order_id IS DISTINCT FROM p_order_id THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.order_id IS NULL THEN 'not_redeemed' ELSE 'other_order' END, (v_ticket).*;
        RETURN;
    END IF;
    UPDATE coupon_tickets AS t SET redeemed_at = NULL, order_id = NULL, hold_until = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    v_ticket.redeemed_at := NULL;
    v_ticket.order_id := NULL;
    v_ticket.hold_until := NULL;
    PERFORM write_ticket_event('ticket.restored', v_ticket, statement_timestamp());
    RETURN QUERY SELECT 'restored', (v_ticket).*;
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
