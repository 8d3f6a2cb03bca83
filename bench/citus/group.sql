-- bench/sql/group.sql as Citus runs it on the coupon's worker (see per_request.sql here): :group new
-- users in one transaction, their ids made first by \gset and passed as one parameter.
\set user random(1, 2000000000)
SELECT string_agg('g' || :client_id || '-' || :user || '-' || i, ',') AS users FROM generate_series(1, :group) AS i \gset
BEGIN;
SELECT count(*) FROM issue_tickets(:coupon, string_to_array(:users, ','));
COMMIT;
