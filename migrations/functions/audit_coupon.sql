-- The audit of one coupon: its counts and the rules they must keep, one text for each rule broken.
-- The one definition the integration tests (TestDatabase.audit) and the bench and fault tools
-- (bench/lib.py's audit) hold the database to; `SELECT * FROM audit_coupon(1)` by hand. No row
-- when there is no such coupon. Read only: it runs on a standby too. PL/pgSQL, as every function
-- here that reads the coupon tables: Citus cannot plan a SQL function's statement by its parameters.
CREATE OR REPLACE FUNCTION audit_coupon(p_coupon_id bigint)
RETURNS TABLE (quantity int, issued_count int, ticket_rows int, held int, users int, violations text[])
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    RETURN QUERY
        SELECT a.quantity, a.issued_count, a.ticket_rows, a.held, a.users,
               array_remove(ARRAY[
                   CASE WHEN a.held > a.quantity THEN format('%s tickets held for %s', a.held, a.quantity) END,
                   CASE WHEN a.issued_count <> a.held THEN format('counter %s but %s held', a.issued_count, a.held) END,
                   CASE WHEN a.users <> a.held THEN format('%s tickets but %s users', a.held, a.users) END,
                   CASE WHEN a.ticket_rows <> a.quantity THEN format('%s ticket rows for %s', a.ticket_rows, a.quantity) END
               ], NULL)
        FROM (
            SELECT c.quantity, c.issued_count, count(t.number)::int AS ticket_rows, count(t.user_id)::int AS held,
                   count(DISTINCT t.user_id)::int AS users
            FROM coupons c
            LEFT JOIN coupon_tickets t ON t.coupon_id = c.id
            WHERE c.id = p_coupon_id
            GROUP BY c.id
        ) AS a;
END;
$$;
