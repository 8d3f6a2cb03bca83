-- Returns the user's ticket to the pool: free again, with a fresh code, and the counter one lower.
-- outcome: returned, ticket_redeemed, ticket_not_found, coupon_not_found.
--
-- A return takes the coupon's row lock first, as issuance does, and moves issued_count down in the
-- same transaction, so the counter equals the tickets held at every commit; the fresh code makes the
-- old one worthless, and a sold-out coupon open again tells every instance (coupon_events).
CREATE OR REPLACE FUNCTION return_ticket(p_coupon_id bigint, p_user_id text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_number   int;
    v_redeemed timestamptz;
    v_code     text;
BEGIN
    -- Issuers of the coupon queue here too: the free tickets and the counter move together.
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 'coupon_not_found';
    END IF;
    SELECT t.number, t.redeemed_at INTO v_number, v_redeemed FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'ticket_not_found';
    END IF;
    IF v_redeemed IS NOT NULL THEN
        RETURN 'ticket_redeemed';
    END IF;
    -- The fresh code is drawn first: a distributed UPDATE (Citus, 0007) may not call a volatile function.
    v_code := replace(gen_random_uuid()::text, '-', '');
    UPDATE coupon_tickets AS t
    SET user_id = NULL, issued_at = NULL, code = v_code
    WHERE t.coupon_id = p_coupon_id AND t.number = v_number;
    UPDATE coupons AS c SET issued_count = c.issued_count - 1 WHERE c.id = p_coupon_id;
    RETURN 'returned';
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
