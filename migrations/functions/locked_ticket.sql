-- The ticket a checkout request means, locked until its transaction ends: the user's ticket of the
-- coupon (p_code NULL), or the held ticket with the code (p_user_id, when given, must be its holder:
-- a caller with the holder's token finds only their own tickets). All columns NULL when there is
-- none. redeem_ticket and restore_ticket start here; the row lock orders every change to one ticket.
CREATE OR REPLACE FUNCTION locked_ticket(p_coupon_id bigint, p_user_id text, p_code text)
RETURNS coupon_tickets
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket coupon_tickets%ROWTYPE;
BEGIN
    IF p_code IS NULL THEN
        SELECT * INTO v_ticket FROM coupon_tickets AS t
        WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id
        FOR UPDATE;
    ELSE
        SELECT * INTO v_ticket FROM coupon_tickets AS t
        WHERE t.coupon_id = p_coupon_id AND t.code = p_code AND t.user_id IS NOT NULL
          AND (p_user_id IS NULL OR t.user_id = p_user_id)
        FOR UPDATE;
    END IF;
    RETURN v_ticket;
END;
$$;

-- Why no ticket was found: a code that names no ticket is not found, whatever its coupon part says;
-- a user's ticket of a coupon that does not exist is the coupon's absence. (PL/pgSQL: Citus cannot
-- plan a SQL function's statement by its parameters.)
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

-- On a Citus cluster (0007) both live on the coupon's worker too, where redeem_ticket and restore_ticket run.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('locked_ticket(bigint,text,text)', 'p_coupon_id', colocate_with => 'coupons');
        PERFORM create_distributed_function('missing_ticket(bigint,text)', 'p_coupon_id', colocate_with => 'coupons');
    END IF;
END;
$$;
