-- Redeems a ticket for an order at checkout, or holds it for that order until hold_until.
--
-- The ticket is the user's (p_user_id, p_code NULL) or the one with the code (p_code; p_user_id, when
-- given, must then be its holder), found and locked by locked_ticket. The clock is the database's
-- (clock_timestamp()), for the hold and for redeem_until alike.
--
-- Without p_hold_seconds: redeemed now (redeemed), or the order's hold confirmed (hold_confirmed).
-- With it (1 to 86,400): held for the order until now + p_hold_seconds, or until the coupon's
-- redeem_until when that comes first, since a hold past it could not be confirmed (hold_placed); the
-- same order asking again keeps its hold as it was (hold_repeated). A redemption for the same order again is
-- redeemed_before; another order's redemption already_redeemed, another order's live hold
-- ticket_held. A hold whose hold_until has passed has lapsed: it is cleared first (hold_lapsed true,
-- counted once, by whoever clears it) and the ticket is free for any order. Nothing is redeemed or
-- held at or after the coupon's redeem_until (redemption_closed), a hold's confirmation included.
-- Also ticket_not_found, coupon_not_found. The ticket's columns come with every outcome that has one.

-- (Until 0010 it took the user alone and held nothing: that signature is gone.)
DROP FUNCTION IF EXISTS redeem_ticket(bigint, text, text);

CREATE OR REPLACE FUNCTION redeem_ticket(p_coupon_id bigint, p_user_id text, p_code text, p_order_id text,
                                         p_hold_seconds int DEFAULT NULL)
RETURNS TABLE (outcome text, hold_lapsed boolean, user_id text, number int, code text, issued_at timestamptz,
               redeemed_at timestamptz, order_id text, hold_until timestamptz)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_ticket coupon_tickets%ROWTYPE;
    v_until  timestamptz;
    v_now    timestamptz;
    v_lapsed boolean := false;
BEGIN
    v_ticket := locked_ticket(p_coupon_id, p_user_id, p_code);
    IF v_ticket.number IS NULL THEN
        RETURN QUERY SELECT missing_ticket(p_coupon_id, p_code), false, NULL::text, NULL::int, NULL::text,
                            NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    v_now := clock_timestamp();
    IF v_ticket.hold_until <= v_now THEN
        UPDATE coupon_tickets AS t SET order_id = NULL, hold_until = NULL
        WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
        v_ticket.order_id := NULL;
        v_ticket.hold_until := NULL;
        v_lapsed := true;
    END IF;
    IF v_ticket.redeemed_at IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.order_id = p_order_id THEN 'redeemed_before' ELSE 'already_redeemed' END,
                            v_lapsed, v_ticket.user_id, v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            v_ticket.redeemed_at, v_ticket.order_id, NULL::timestamptz;
        RETURN;
    END IF;
    IF v_ticket.hold_until IS NOT NULL AND v_ticket.order_id <> p_order_id THEN
        RETURN QUERY SELECT 'ticket_held', v_lapsed, v_ticket.user_id, v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            NULL::timestamptz, v_ticket.order_id, v_ticket.hold_until;
        RETURN;
    END IF;
    IF v_ticket.hold_until IS NOT NULL AND p_hold_seconds IS NOT NULL THEN
        RETURN QUERY SELECT 'hold_repeated', v_lapsed, v_ticket.user_id, v_ticket.number, v_ticket.code, v_ticket.issued_at,
                            NULL::timestamptz, v_ticket.order_id, v_ticket.hold_until;
        RETURN;
    END IF;
    SELECT c.redeem_until INTO v_until FROM coupons AS c WHERE c.id = p_coupon_id;
    IF v_until IS NOT NULL AND v_now >= v_until THEN
        RETURN QUERY SELECT 'redemption_closed', v_lapsed, v_ticket.user_id, v_ticket.number, v_ticket.code,
                            v_ticket.issued_at, NULL::timestamptz, v_ticket.order_id, v_ticket.hold_until;
        RETURN;
    END IF;
    IF p_hold_seconds IS NOT NULL THEN
        RETURN QUERY
            UPDATE coupon_tickets AS t
            SET order_id = p_order_id, hold_until = least(v_now + p_hold_seconds * interval '1 second', v_until)
            WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number
            RETURNING 'hold_placed'::text, v_lapsed, t.user_id, t.number, t.code, t.issued_at, t.redeemed_at,
                      t.order_id, t.hold_until;
        RETURN;
    END IF;
    RETURN QUERY
        UPDATE coupon_tickets AS t SET redeemed_at = v_now, order_id = p_order_id, hold_until = NULL
        WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number
        RETURNING CASE WHEN v_ticket.hold_until IS NULL THEN 'redeemed' ELSE 'hold_confirmed' END, v_lapsed,
                  t.user_id, t.number, t.code, t.issued_at, t.redeemed_at, t.order_id, t.hold_until;
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
