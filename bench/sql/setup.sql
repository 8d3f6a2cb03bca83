-- Bench-only tables, outside the migrations: the strategies the service does not use.
CREATE TABLE IF NOT EXISTS bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench_hot_row VALUES (1, 0) ON CONFLICT DO NOTHING;
-- The naive strategy writes here, with no constraint to stop it.
CREATE TABLE IF NOT EXISTS bench_naive_issues (coupon_id bigint NOT NULL, user_id text NOT NULL);
