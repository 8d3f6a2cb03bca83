-- The ticket a request about one ticket means, as coupon_ticket_states shows it: the user's ticket of
-- the coupon (p_code NULL), or the held ticket with the code (p_user_id, when given, must be its
-- holder: a caller with the holder's token finds only their own tickets). All columns NULL when there
-- is none.
--
-- With p_lock, or when it shows a lapsed hold, the row is locked until the transaction ends (the lock
-- orders every change to one ticket) and read again, as it may have changed meanwhile (a return gives
-- it a fresh code and no holder). A lapsed hold is then cleared, and hold_lapsed is true only in the
-- call that cleared it: each lapse is counted once, and told once (the event ticket.hold_lapsed). The read routes (p_lock false) and every ticket
-- function start here.
DROP FUNCTION IF EXISTS locked_ticket(bigint, text, text);

CREATE OR REPLACE FUNCTION ticket_of(p_coupon_id bigint, p_user_id text, p_code text, p_lock boolean)
RETURNS coupon_ticket_states
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket coupon_ticket_states%ROWTYPE;
BEGIN
    IF p_code IS NULL THEN
        SELECT * INTO v_ticket FROM coupon_ticket_states AS t
        WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id;
    ELSE
        SELECT * INTO v_ticket FROM coupon_ticket_states AS t
        WHERE t.coupon_id = p_coupon_id AND t.code = p_code AND t.user_id = coalesce(p_user_id, t.user_id);
    END IF;
    IF v_ticket.number IS NULL OR NOT (p_lock OR v_ticket.hold_lapsed) THEN
        RETURN v_ticket;
    END IF;
    SELECT * INTO v_ticket FROM coupon_ticket_states AS t
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number AND t.code = v_ticket.code
      AND t.user_id = v_ticket.user_id
    FOR UPDATE;
    IF v_ticket.hold_lapsed THEN
        UPDATE coupon_tickets AS t SET order_id = NULL, hold_until = NULL
        WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
        PERFORM write_ticket_event('ticket.hold_lapsed', v_ticket, statement_timestamp());
    END IF;
    RETURN v_ticket;
END;
$$;

-- Why no ticket was found: a code that names no ticket is not found, whatever its coupon part says;
-- a user's ticket of a coupon that does not exist is the coupon's absence.
CREATE OR REPLACE FUNCTION missing_ticket(p_coupon_id bigint, p_code text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    RETURN CASE WHEN p_code IS NOT NULL OR EXISTS (SELECT 1 FROM coupons AS c WHERE c.id = p_coupon_id)
                THEN 'ticket_not_found' ELSE 'coupon_not_found' END;
END;
$$;

-- On a Citus cluster (0007) they run on the coupon's worker, where the ticket functions run.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('ticket_of(bigint,text,text,boolean)', 'p_coupon_id', colocate_with => 'coupons');
        PERFORM create_distributed_function('missing_ticket(bigint,text)', 'p_coupon_id', colocate_with => 'coupons');
    END IF;
END;
$$;
