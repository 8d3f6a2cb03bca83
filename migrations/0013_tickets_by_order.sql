-- migrate: no-transaction
-- GET /v1/orders/{order_id}/tickets: an order's tickets. Only tickets with an order have entries.
-- Built CONCURRENTLY, so issuance goes on while it builds (docs/operations.md, "Migrations while
-- instances serve"); until 2026-12-07 it was the last statement of 0012, which took coupon_tickets'
-- write lock for the build. Databases that ran it there have it and keep that record of 0012
-- (Migration.formerChecksums); IF NOT EXISTS finds it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS coupon_tickets_by_order ON coupon_tickets (order_id) WHERE order_id IS NOT NULL;
