-- bench/sql/group_many.sql as Citus runs it on the coupon's worker (see per_request.sql here): :group
-- new users of one of :coupons coupons (ids :first to :first + :coupons - 1), chosen at random.
\set user random(1, 2000000000)
\set coupon :first + random(0, :coupons - 1)
SELECT string_agg('m' || :client_id || '-' || :user || '-' || i, ',') AS users FROM generate_series(1, :group) AS i \gset
BEGIN;
SELECT count(*) FROM issue_tickets(:coupon, string_to_array(:users, ','));
COMMIT;
