-- Group issuance: the same function for :group users in one transaction, as the server batches.
\set user random(1, 2000000000)
BEGIN;
SELECT count(*) FROM issue_tickets(:coupon,
    ARRAY(SELECT 'g' || :client_id || '-' || :user || '-' || i FROM generate_series(1, :group) AS i));
COMMIT;
