-- Past one database: on a Citus cluster (the citus extension installed in this database, workers
-- added), the coupon tables are distributed by coupon and colocated, so a coupon, its tickets and
-- every statement about them live on one worker; the functions that take a coupon run on that
-- worker. On plain PostgreSQL this migration does nothing.
--
-- Citus refuses to distribute a table that has triggers, so the notification triggers (0002) are
-- dropped first and created again on the distributed table (citus.enable_unsafe_triggers: they fire
-- on the workers' shards, so the notifications are sent on the worker that holds the coupon, where
-- the catalogue listener also listens: see CatalogueListener). Rules checked by DistributionRulesTests;
-- what was run and measured: docs/scaling.md.

DO $$
DECLARE
    v_triggers text[];
    v_trigger  text;
    v_name     name;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;

    -- Function commands after the tables' creation, in one transaction, need the shards created over
    -- one connection per worker.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

    -- The triggers as they are (0002), dropped, and created again once the table is distributed.
    SELECT array_agg(pg_get_triggerdef(t.oid) ORDER BY t.tgname) INTO v_triggers
    FROM pg_trigger AS t WHERE t.tgrelid = 'coupons'::regclass AND NOT t.tgisinternal;
    FOR v_name IN SELECT t.tgname FROM pg_trigger AS t WHERE t.tgrelid = 'coupons'::regclass AND NOT t.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON coupons', v_name);
    END LOOP;

    PERFORM create_distributed_table('coupons', 'id');
    PERFORM create_distributed_table('coupon_tickets', 'coupon_id', colocate_with => 'coupons');

    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH v_trigger IN ARRAY v_triggers LOOP
        EXECUTE v_trigger;
    END LOOP;

    -- A coupon and its tickets are written in one transaction on the worker that holds them, which
    -- also sends the notification. That transaction must stay on that worker: a two-phase commit
    -- (PREPARE TRANSACTION) is refused after NOTIFY. So the tickets are generated on the worker
    -- (add_coupon_tickets is delegated, below; rows routed through the coordinator's COPY make Citus
    -- prepare), and ANALYZE reads only the coupon's shard, a plain table there (ANALYZE of the
    -- distributed table would reach every worker). Without it issuance plans a fresh shard blind:
    -- 53 against 298 transactions a second in bench/results/citus.md's first run.
    EXECUTE $fn$
        CREATE OR REPLACE FUNCTION add_coupon_tickets(p_coupon_id bigint, p_first_number bigint, p_last_number bigint)
        RETURNS void
        LANGUAGE plpgsql
        AS $body$
        DECLARE
            v_shard text := shard_name('coupon_tickets'::regclass,
                                       get_shard_id_for_distribution_column('coupon_tickets', p_coupon_id));
        BEGIN
            INSERT INTO coupon_tickets (coupon_id, number, code)
            SELECT p_coupon_id, n, replace(gen_random_uuid()::text, '-', '')
            FROM generate_series(p_first_number, p_last_number) AS n;
            IF to_regclass(v_shard) IS NOT NULL THEN
                EXECUTE format('ANALYZE %s', v_shard);
            END IF;
        END;
        $body$
    $fn$;

    -- Called inside an explicit transaction (BEGIN, issue_tickets, COMMIT in one round trip), which
    -- Citus delegates only with force_delegation.
    PERFORM create_distributed_function('issue_tickets(bigint,text[])', 'p_coupon_id',
                                        colocate_with => 'coupons', force_delegation => true);
    PERFORM create_distributed_function('add_coupon_tickets(bigint,bigint,bigint)', 'p_coupon_id',
                                        colocate_with => 'coupons', force_delegation => true);
    PERFORM create_distributed_function('redeem_ticket(bigint,text,text)', 'p_coupon_id', colocate_with => 'coupons');
    PERFORM create_distributed_function('restore_ticket(bigint,text)', 'p_coupon_id', colocate_with => 'coupons');
    PERFORM create_distributed_function('return_ticket(bigint,text)', 'p_coupon_id', colocate_with => 'coupons');
END;
$$;
