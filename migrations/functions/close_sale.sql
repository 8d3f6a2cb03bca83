-- Ends a coupon's sale now (POST /v1/coupons/{id}/close), in the caller's transaction: the coupon's
-- row is locked first, as every issuer locks it, so the groups that held it have committed and every
-- later one finds the sale ended (issue_tickets judges the window on clock_timestamp() once it holds
-- the lock). The end is read from the same clock after the lock. A sale that has ended already keeps
-- its end; one that has not started ends without opening (starts_at cleared). No row: no coupon.
CREATE OR REPLACE FUNCTION close_sale(p_coupon_id bigint)
RETURNS SETOF coupons
LANGUAGE plpgsql
AS $$
DECLARE
    v_now timestamptz;
BEGIN
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_now := clock_timestamp();
    RETURN QUERY
        UPDATE coupons AS c
        SET ends_at = CASE WHEN c.ends_at <= v_now THEN c.ends_at ELSE v_now END,
            starts_at = CASE WHEN c.starts_at > v_now THEN NULL ELSE c.starts_at END
        WHERE c.id = p_coupon_id
        RETURNING c.*;
END;
$$;

-- On a Citus cluster (0007) it runs on the worker that holds the coupon, on that worker's clock, which
-- issue_tickets reads too; the service calls it inside an explicit transaction, which needs
-- force_delegation.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('close_sale(bigint)', 'p_coupon_id', colocate_with => 'coupons',
                                            force_delegation => true);
    END IF;
END;
$$;
