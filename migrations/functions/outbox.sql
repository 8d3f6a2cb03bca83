-- Writes the events of a change into the outbox (migrations/0012), in the change's own transaction
-- and after it has locked what it changes: the ticket functions call write_ticket_event (issue_tickets
-- writes a group's events in one INSERT of its own, and its sell-out), the coupons' triggers write the
-- other coupon events.
-- docs/events.md lists every type and when it is written.

-- One ticket's event: the ticket as coupon_ticket_states shows it after the change (ticket.returned:
-- before it), at p_at on the database's clock.
CREATE OR REPLACE FUNCTION write_ticket_event(p_type text, p_ticket coupon_ticket_states, p_at timestamptz)
RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO outbox (coupon_id, type, occurred_at, number, code, user_id, issued_at, redeemed_at, order_id, hold_until)
    VALUES (p_ticket.coupon_id, p_type, p_at, p_ticket.number, p_ticket.code, p_ticket.user_id, p_ticket.issued_at,
            p_ticket.redeemed_at, p_ticket.order_id, p_ticket.hold_until)
$$;

-- A coupon's event (TG_ARGV[0]: its type): the coupon as it is after the change.
CREATE OR REPLACE FUNCTION write_coupon_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO outbox (coupon_id, type, occurred_at, name, quantity, issued_count, starts_at, ends_at, redeem_until,
                        created_at)
    VALUES (NEW.id, TG_ARGV[0], clock_timestamp(), NEW.name, NEW.quantity, NEW.issued_count, NEW.starts_at, NEW.ends_at,
            NEW.redeem_until, NEW.created_at);
    RETURN NULL;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
END;
$$;

-- The WHEN clauses are checked in C: an issuance runs no trigger (issue_tickets writes its own
-- coupon.sold_out, after its tickets). Fired in name order: a quantity lowered to the issued count is
-- changed, then sold out.
CREATE OR REPLACE TRIGGER coupons_created_event
    AFTER INSERT ON coupons
    FOR EACH ROW EXECUTE FUNCTION write_coupon_event('coupon.created');

CREATE OR REPLACE TRIGGER coupons_changed_event
    AFTER UPDATE ON coupons
    FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name
          OR OLD.quantity IS DISTINCT FROM NEW.quantity
          OR OLD.starts_at IS DISTINCT FROM NEW.starts_at
          OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR OLD.redeem_until IS DISTINCT FROM NEW.redeem_until)
    EXECUTE FUNCTION write_coupon_event('coupon.changed');

CREATE OR REPLACE TRIGGER coupons_sold_out_event
    AFTER UPDATE ON coupons
    FOR EACH ROW
    WHEN (OLD.issued_count < OLD.quantity AND NEW.issued_count >= NEW.quantity AND OLD.quantity <> NEW.quantity)
    EXECUTE FUNCTION write_coupon_event('coupon.sold_out');

-- Where the feed may read up to (EventFeed in Sources/): the outbox's last position taken, then the
-- transactions of this database running in a later snapshot. Every position up to last_position was
-- taken by a transaction that had its id before that snapshot (each writer locks what it changes
-- before it writes its events), so once every transaction in running has ended, no position up to
-- last_position can still appear. Transactions of other databases of the cluster are left out (the
-- snapshot lists them all): a long one elsewhere does not hold the feed. pg_stat_activity is read
-- after the snapshot, so a transaction it no longer lists has ended; prepared ones are listed too.
-- On a Citus cluster (0007) each worker writes its coupons' events with positions of its own, which
-- one cursor cannot follow: there it answers NULLs, and the feed says it is not served.
DROP FUNCTION IF EXISTS outbox_horizon();

CREATE FUNCTION outbox_horizon(OUT last_position bigint, OUT running bigint[])
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
    v_snapshot pg_snapshot;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO last_position FROM outbox_position_seq AS s;
    SELECT pg_current_snapshot() INTO v_snapshot;
    SELECT coalesce(array_agg(x.xid::text::bigint), '{}') INTO running
    FROM pg_snapshot_xip(v_snapshot) AS x(xid)
    WHERE x.xid::text::bigint % 4294967296 IN (
        SELECT a.backend_xid::text::bigint FROM pg_stat_activity AS a
        WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
        UNION ALL
        SELECT p.transaction::text::bigint FROM pg_prepared_xacts AS p WHERE p.database = current_database());
END;
$$;
