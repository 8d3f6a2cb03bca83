-- A coupon's creation analyzes no more than issuance needs, and a raise nothing. 0001 ran ANALYZE of
-- the whole ticket table, every column, on every creation and every raise. What issuance needs is
-- the new coupon_id in the statistics (with few coupons every one is a most-common value, and one
-- missing from them is estimated at one row: the planner then reads the whole coupon) and the share
-- of free tickets (issued_at IS NULL) that the free-ticket index serves. So: the two columns
-- (coupon_id, issued_at), not the 32-character codes, user and order ids; and only at creation
-- (first number 1): a raise adds tickets to a coupon the statistics already know.
--
-- On Citus, 0007's version stays: it analyzes the coupon's shard alone on its worker.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    CREATE OR REPLACE FUNCTION add_coupon_tickets(p_coupon_id bigint, p_first_number bigint, p_last_number bigint)
    RETURNS void
    LANGUAGE plpgsql
    AS $fn$
    BEGIN
        INSERT INTO coupon_tickets (coupon_id, number, code)
        SELECT p_coupon_id, n, replace(gen_random_uuid()::text, '-', '')
        FROM generate_series(p_first_number, p_last_number) AS n;
        IF p_first_number = 1 THEN
            ANALYZE coupon_tickets (coupon_id, issued_at);
        END IF;
    END;
    $fn$;
END;
$$;
