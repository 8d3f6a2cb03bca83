-- Tells every instance when a coupon's catalogue entry changes: created, resized, its window moved,
-- or it became sold out (or stopped being so). The payload is the coupon id.
--
-- Never per issued ticket: a transaction that has sent NOTIFY takes a database-wide lock at commit,
-- which would serialize all issuance. The WHEN clauses are checked in C, before any PL/pgSQL runs.
--
-- On a Citus cluster (0007) the triggers fire on the workers' shards, so the notification is sent on
-- the worker that holds the coupon, where the catalogue listener also listens (CatalogueListener);
-- Citus creates triggers on a distributed table only with citus.enable_unsafe_triggers.
CREATE OR REPLACE FUNCTION notify_coupon_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('coupon_events', NEW.id::text);
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

CREATE OR REPLACE TRIGGER coupons_created_notify
    AFTER INSERT ON coupons
    FOR EACH ROW EXECUTE FUNCTION notify_coupon_event();

CREATE OR REPLACE TRIGGER coupons_changed_notify
    AFTER UPDATE ON coupons
    FOR EACH ROW
    WHEN (OLD.quantity IS DISTINCT FROM NEW.quantity
          OR OLD.starts_at IS DISTINCT FROM NEW.starts_at
          OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR (OLD.issued_count >= OLD.quantity) <> (NEW.issued_count >= NEW.quantity))
    EXECUTE FUNCTION notify_coupon_event();
