-- Each ticket as it stands now, on the database's clock: the one definition of a lapsed hold, which
-- every read and every ticket function uses (the functions read their ticket through ticket_of).
-- A hold lasts while hold_until is ahead of statement_timestamp() (the statement's start: stable, so
-- the planner folds the view into each query, and Citus accepts it where a volatile clock is refused);
-- once it has passed, the hold has lapsed and the ticket reads as issued (no order, no hold_until)
-- everywhere, though its columns keep the lapsed hold until ticket_of clears them (hold_lapsed).
-- The indexes of coupon_tickets serve every query of it.
CREATE OR REPLACE VIEW coupon_ticket_states AS
SELECT t.coupon_id, t.number, t.code, t.user_id, t.issued_at, t.redeemed_at,
       CASE WHEN t.redeemed_at IS NOT NULL OR t.hold_until > statement_timestamp() THEN t.order_id END AS order_id,
       CASE WHEN t.hold_until > statement_timestamp() THEN t.hold_until END AS hold_until,
       coalesce(t.hold_until <= statement_timestamp(), false) AS hold_lapsed
FROM coupon_tickets AS t;
