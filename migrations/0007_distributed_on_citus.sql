-- Past one database: on a Citus cluster (the citus extension installed in this database, workers
-- added), the coupon tables are distributed by coupon and colocated, so a coupon, its tickets and
-- every statement about them live on one worker. On plain PostgreSQL this migration does nothing.
--
-- Citus refuses to distribute a table that has triggers, so a database whose triggers were made
-- before this migration has them dropped first; migrations/functions/notify_coupon_event.sql makes
-- them again (on the distributed table), and each function file that takes a coupon distributes its
-- function to the coupon's worker. Rules checked by DistributionRulesTests; what was run and
-- measured: docs/scaling.md.

DO $$
DECLARE
    v_name name;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;

    -- The shards created over one connection per worker, so that later commands of the same
    -- transaction may use them.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

    FOR v_name IN SELECT t.tgname FROM pg_trigger AS t WHERE t.tgrelid = 'coupons'::regclass AND NOT t.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON coupons', v_name);
    END LOOP;

    PERFORM create_distributed_table('coupons', 'id');
    PERFORM create_distributed_table('coupon_tickets', 'coupon_id', colocate_with => 'coupons');
END;
$$;
