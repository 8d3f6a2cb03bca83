-- Adds tickets first_number..last_number to a coupon. A code is the coupon's id, a dash and 128 bits
-- from gen_random_uuid() in hex, which PostgreSQL draws from its cryptographically strong random
-- source (122 of them random): the code alone names the coupon, so a lookup by code reads the
-- coupon's own index entries (one shard on Citus). Codes drawn before 0010 are the hex digits alone.
--
-- Then, at a coupon's creation (first number 1), ANALYZE of what issuance needs, in the same
-- transaction (it counts the transaction's own rows): the new coupon_id in the statistics (one
-- missing from them is estimated at one row, and the planner then reads the whole coupon), the
-- share of free tickets (issued_at IS NULL) that the free-ticket index serves, and number and
-- user_id: in a database where they were never analyzed, the planner expected each ticket number
-- and each user of a group to match thousands of rows, and the first coupon of a million tickets
-- sold at a tenth of its speed until autovacuum's ANALYZE came. Not the codes and order ids, and
-- not on a raise: the statistics already know the coupon.
--
-- On a Citus cluster (0007) the function runs on the worker that holds the coupon, so a coupon and
-- its tickets are written in one transaction there, which also sends the notification (a two-phase
-- commit is refused after NOTIFY; rows routed through the coordinator's COPY would make Citus
-- prepare). There ANALYZE reads the coupon's shard alone, a plain table on that worker (ANALYZE of
-- the distributed table would reach every worker), on every call as before.
-- Measurements behind each choice: docs/design.md.
CREATE OR REPLACE FUNCTION add_coupon_tickets(p_coupon_id bigint, p_first_number bigint, p_last_number bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_shard text;
BEGIN
    INSERT INTO coupon_tickets (coupon_id, number, code)
    SELECT p_coupon_id, n, p_coupon_id || '-' || replace(gen_random_uuid()::text, '-', '')
    FROM generate_series(p_first_number, p_last_number) AS n;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        v_shard := shard_name('coupon_tickets'::regclass,
                              get_shard_id_for_distribution_column('coupon_tickets', p_coupon_id));
        IF to_regclass(v_shard) IS NOT NULL THEN
            EXECUTE format('ANALYZE %s', v_shard);
        END IF;
    ELSIF p_first_number = 1 THEN
        ANALYZE coupon_tickets (coupon_id, number, issued_at, user_id);
    END IF;
END;
$$;

-- Called inside the transaction that creates the coupon, which Citus delegates only with force_delegation.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('add_coupon_tickets(bigint,bigint,bigint)', 'p_coupon_id',
                                            colocate_with => 'coupons', force_delegation => true);
    END IF;
END;
$$;
