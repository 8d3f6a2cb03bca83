-- A ticket's code: the coupon's id, a dash and 128 bits from gen_random_uuid() in hex, which
-- PostgreSQL draws from its cryptographically strong random source (122 of them random). The code
-- alone names the coupon, so a lookup by code reads the coupon's own index entries (one shard on
-- Citus). Codes drawn before 0010 are the hex digits alone. The one place a code is drawn.
CREATE OR REPLACE FUNCTION new_ticket_code(p_coupon_id bigint)
RETURNS text
LANGUAGE sql
VOLATILE
AS $$
    SELECT p_coupon_id || '-' || replace(gen_random_uuid()::text, '-', '')
$$;

-- Adds tickets first_number..last_number to a coupon, each with a new code.
--
-- Then, at a coupon's creation (first number 1), ANALYZE of what issuance needs, in the same
-- transaction (it counts the transaction's own rows): the new coupon_id in the statistics (the planner
-- estimates a coupon missing from them at one row, and then reads the whole coupon), the share of free
-- tickets (issued_at IS NULL) that the free-ticket index serves, and number and user_id, whose default
-- estimates make a first large coupon sell far slower until autovacuum analyzes (docs/design.md). Not
-- on a raise: the statistics already know the coupon.
--
-- On a Citus cluster (0007) the function runs on the worker that holds the coupon, so a coupon and
-- its tickets are written in one transaction there, which also sends the notification (a two-phase
-- commit is refused after NOTIFY). There ANALYZE reads the coupon's shard alone, a plain table on that
-- worker, on every call.
CREATE OR REPLACE FUNCTION add_coupon_tickets(p_coupon_id bigint, p_first_number bigint, p_last_number bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_shard text;
BEGIN
    INSERT INTO coupon_tickets (coupon_id, number, code)
    SELECT p_coupon_id, n, new_ticket_code(p_coupon_id)
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
        PERFORM create_distributed_function('new_ticket_code(bigint)');
    END IF;
END;
$$;
