-- bench/sql/per_request.sql as Citus runs it on the coupon's worker: issue_tickets delegated there
-- needs arguments that are constants or parameters (here a parameter made by \gset), not expressions;
-- an expression makes the coordinator run it shard by shard, where a sell-out's NOTIFY breaks the
-- two-phase commit (docs/scaling.md). One user per transaction.
\set user random(1, 2000000000)
SELECT 'p' || :client_id || '-' || :user AS users \gset
BEGIN;
SELECT count(*) FROM issue_tickets(:coupon, string_to_array(:users, ','));
COMMIT;
