-- The service's SQL one request at a time: issue_tickets (coupon row lock, holder check,
-- SELECT ... FOR UPDATE SKIP LOCKED claim, counter by rows claimed) for one user per transaction.
\set user random(1, 2000000000)
BEGIN;
SELECT count(*) FROM issue_tickets(:coupon, ARRAY['p' || :client_id || '-' || :user]);
COMMIT;
