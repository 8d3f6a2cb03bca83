-- Returns the user's ticket to the pool: free again, with a fresh code, and the counter one lower.
-- outcome: returned, ticket_redeemed, ticket_held (an order's live hold: the checkout is paying with
-- it), ticket_not_found, coupon_not_found; then the ticket as it was before the return, as
-- redeem_ticket answers it (hold_lapsed: a lapsed hold was cleared on the way).
--
-- A return takes the coupon's row lock first, as issuance does, and moves issued_count down in the
-- same transaction, so the counter equals the tickets held at every commit; the fresh code makes the
-- old one worthless, and a sold-out coupon open again tells every instance (coupon_events). The event
-- ticket.returned carries the ticket as it was.

-- (Until 0010 it answered the outcome alone; an earlier version the outcome and hold_lapsed.)
DROP FUNCTION IF EXISTS return_ticket(bigint, text);

CREATE FUNCTION return_ticket(p_coupon_id bigint, p_user_id text)
RETURNS SETOF ticket_answer
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket coupon_ticket_states%ROWTYPE;
    v_code   text;
BEGIN
    -- Issuers of the coupon queue here too: the free tickets and the counter move together.
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'coupon_not_found', (v_ticket).*;
        RETURN;
    END IF;
    v_ticket := ticket_of(p_coupon_id, p_user_id, NULL, true);
    IF v_ticket.number IS NULL OR v_ticket.redeemed_at IS NOT NULL OR v_ticket.hold_until IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.number IS NULL THEN 'ticket_not_found'
                                 WHEN v_ticket.redeemed_at IS NOT NULL THEN 'ticket_redeemed'
                                 ELSE 'ticket_held' END,
                            (v_ticket).*;
        RETURN;
    END IF;
    -- Drawn first: a distributed UPDATE (Citus, 0007) may not call a volatile function.
    v_code := new_ticket_code(p_coupon_id);
    UPDATE coupon_tickets AS t
    SET user_id = NULL, issued_at = NULL, code = v_code, order_id = NULL, hold_until = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    UPDATE coupons AS c SET issued_count = c.issued_count - 1 WHERE c.id = p_coupon_id;
    PERFORM write_ticket_event('ticket.returned', v_ticket, statement_timestamp());
    RETURN QUERY SELECT 'returned', (v_ticket).*;
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
