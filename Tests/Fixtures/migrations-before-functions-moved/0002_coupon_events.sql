-- Tells every instance when a coupon's catalogue entry changes: created, resized, its window moved,
-- or it became sold out (or stopped being so). The payload is the coupon id.
--
-- Never per issued ticket: a transaction that has sent NOTIFY takes a database-wide lock at commit,
-- which would serialize all issuance. The WHEN clauses are checked in C, before any PL/pgSQL runs.

CREATE FUNCTION notify_coupon_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('coupon_events', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER coupons_created_notify
    AFTER INSERT ON coupons
    FOR EACH ROW EXECUTE FUNCTION notify_coupon_event();

CREATE TRIGGER coupons_changed_notify
    AFTER UPDATE ON coupons
    FOR EACH ROW
    WHEN (OLD.quantity IS DISTINCT FROM NEW.quantity
          OR OLD.starts_at IS DISTINCT FROM NEW.starts_at
          OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR (OLD.issued_count >= OLD.quantity) <> (NEW.issued_count >= NEW.quantity))
    EXECUTE FUNCTION notify_coupon_event();
