-- Naive: count, then insert when below the quantity. Two transactions can both see room: over-issues.
\set user random(1, 2000000000)
BEGIN;
SELECT count(*) AS held FROM bench_naive_issues WHERE coupon_id = :coupon \gset
\if :held < :quantity
INSERT INTO bench_naive_issues (coupon_id, user_id) VALUES (:coupon, 'n' || :client_id || '-' || :user);
\endif
COMMIT;
