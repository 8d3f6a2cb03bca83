-- Redeems a ticket for an order at checkout, or holds it for that order until hold_until.
--
-- The ticket is the user's (p_user_id, p_code NULL) or the one with the code (p_code; p_user_id, when
-- given, must then be its holder), found and locked by ticket_of, which clears a lapsed hold first.
-- The clock is the database's (statement_timestamp(), as coupon_ticket_states judges holds), for the
-- hold and for redeem_until alike.
--
-- Without p_hold_seconds: redeemed now (redeemed), or the order's hold confirmed (hold_confirmed).
-- With it (1 to 86,400): held for the order until now + p_hold_seconds, or until the coupon's
-- redeem_until when that comes first, since a hold past it could not be confirmed (hold_placed); the
-- same order asking again keeps its hold as it was (hold_repeated). A redemption for the same order
-- again is redeemed_before; another order's redemption already_redeemed, another order's live hold
-- ticket_held. Nothing is redeemed or held at or after the coupon's redeem_until (redemption_closed),
-- a hold's confirmation included. Also ticket_not_found, coupon_not_found.
--
-- One ticket_answer (migrations/0011), as every ticket function answers. A hold placed writes the
-- event ticket.held, a redemption or a confirmed hold ticket.redeemed (migrations/functions/outbox.sql).

-- (Until 0010 it took the user alone and held nothing; an earlier version answered other columns.)
DROP FUNCTION IF EXISTS redeem_ticket(bigint, text, text);
DROP FUNCTION IF EXISTS redeem_ticket(bigint, text, text, text, int);

CREATE FUNCTION redeem_ticket(p_coupon_id bigint, p_user_id text, p_code text, p_order_id text,
                              p_hold_seconds int DEFAULT NULL)
RETURNS SETOF ticket_answer
LANGUAGE plpgsql
AS $$
DECLARE
    v_ticket  coupon_ticket_states%ROWTYPE;
    v_outcome text;
    v_until   timestamptz;
    v_now     timestamptz := statement_timestamp();
BEGIN
    v_ticket := ticket_of(p_coupon_id, p_user_id, p_code, true);
    v_outcome := CASE
        WHEN v_ticket.number IS NULL THEN missing_ticket(p_coupon_id, p_code)
        WHEN v_ticket.redeemed_at IS NOT NULL AND v_ticket.order_id = p_order_id THEN 'redeemed_before'
        WHEN v_ticket.redeemed_at IS NOT NULL THEN 'already_redeemed'
        WHEN v_ticket.hold_until IS NOT NULL AND v_ticket.order_id <> p_order_id THEN 'ticket_held'
        WHEN v_ticket.hold_until IS NOT NULL AND p_hold_seconds IS NOT NULL THEN 'hold_repeated'
    END;
    IF v_outcome IS NULL THEN
        SELECT c.redeem_until INTO v_until FROM coupons AS c WHERE c.id = p_coupon_id;
        IF v_until IS NOT NULL AND v_now >= v_until THEN
            v_outcome := 'redemption_closed';
        END IF;
    END IF;
    IF v_outcome IS NOT NULL THEN
        RETURN QUERY SELECT v_outcome, (v_ticket).*;
        RETURN;
    END IF;
    IF p_hold_seconds IS NOT NULL THEN
        v_outcome := 'hold_placed';
        v_ticket.hold_until := least(v_now + p_hold_seconds * interval '1 second', v_until);
    ELSE
        v_outcome := CASE WHEN v_ticket.hold_until IS NULL THEN 'redeemed' ELSE 'hold_confirmed' END;
        v_ticket.redeemed_at := v_now;
        v_ticket.hold_until := NULL;
    END IF;
    v_ticket.order_id := p_order_id;
    UPDATE coupon_tickets AS t
    SET redeemed_at = v_ticket.redeemed_at, order_id = v_ticket.order_id, hold_until = v_ticket.hold_until
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    PERFORM write_ticket_event(CASE v_outcome WHEN 'hold_placed' THEN 'ticket.held' ELSE 'ticket.redeemed' END, v_ticket, v_now);
    RETURN QUERY SELECT v_outcome, (v_ticket).*;
END;
$$;

-- On a Citus cluster (0007) it runs on the worker that holds the coupon.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('redeem_ticket(bigint,text,text,text,int)', 'p_coupon_id',
                                            colocate_with => 'coupons');
    END IF;
END;
$$;
