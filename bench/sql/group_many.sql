-- Group issuance over several coupons: each transaction issues to :group users of one of :coupons
-- coupons (ids :first to :first + :coupons - 1), chosen at random, as a sale of many coupons does.
\set user random(1, 2000000000)
\set coupon :first + random(0, :coupons - 1)
BEGIN;
SELECT count(*) FROM issue_tickets(:coupon,
    ARRAY(SELECT 'm' || :client_id || '-' || :user || '-' || i FROM generate_series(1, :group) AS i));
COMMIT;
