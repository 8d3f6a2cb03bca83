-- Issues tickets of one coupon to a group of users in the caller's transaction, one row per distinct
-- user: 'issued' (a ticket claimed now), 'already_issued' (the ticket the user already had), or the
-- refusal 'sold_out', 'not_started', 'ended' or 'coupon_not_found'; each row a ticket_answer
-- (migrations/0011), as every ticket function answers: the outcome, then the user's ticket as issued
-- (issuance reads no checkout columns: redeemed_at, order_id and hold_until come NULL), or with a
-- refusal the user's id alone. The caller holds a READ COMMITTED transaction and must COMMIT
-- before it answers anyone.
--
-- The coupon row is locked first. Every issuer of the coupon queues there, so each later statement
-- (a new snapshot under READ COMMITTED) already sees every ticket committed before it: the holder
-- check is exact, nothing waits on another issuer's unique key, and the counter moves by exactly the
-- number of rows claimed.
--
-- The window is judged on clock_timestamp() read once the lock is held, and issued_at stamped with
-- that instant: now() is the start of the transaction, and BEGIN is sent before the lock is granted.
-- So no ticket is issued by a transaction whose lock was granted at or after ends_at, and once the
-- catalogue holds the row FOR SHARE at or after ends_at, the holders it reads are final.
--
-- Claims start at coupons.issued_through, a hint (the highest number issued so far): claimed rows
-- leave coupon_tickets_free only when VACUUM comes, so reading from the start of the coupon would read
-- every dead entry again. When no free ticket lies after the hint, the claim reads from the start;
-- the probe is ordered by number so the free-ticket index answers it, whatever the estimate. Claims
-- are capped at quantity - issued_count, so a raise can write its rows before it locks the coupon.
-- One statement does the work (holders, claim, counter, events, refusals): each user is looked up once.
-- Why each choice: docs/design.md.

-- (An earlier version answered other columns, which CREATE OR REPLACE cannot change.)
DROP FUNCTION IF EXISTS issue_tickets(bigint, text[]);

CREATE FUNCTION issue_tickets(p_coupon_id bigint, p_user_ids text[])
RETURNS SETOF ticket_answer
LANGUAGE plpgsql
-- Plans made once per connection (the default planned the claim again on almost every call of a small
-- group), and no JIT (a new coupon's estimates could make every call compile).
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_coupon  coupons%ROWTYPE;
    v_refusal text;
    v_after   int;
    v_now     timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'issue_tickets needs READ COMMITTED, not %', current_setting('transaction_isolation');
    END IF;

    -- Every issuer of the coupon queues here; each later statement takes a new snapshot, so it sees
    -- every ticket committed before this lock was granted.
    SELECT * INTO v_coupon FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    -- The window is judged now that the lock is held, not when the transaction began (see the header).
    v_now := clock_timestamp();
    IF NOT FOUND THEN
        RETURN QUERY SELECT DISTINCT 'coupon_not_found', p_coupon_id, NULL::int, NULL::text, r.id, NULL::timestamptz,
                                     NULL::timestamptz, NULL::text, NULL::timestamptz, false
                     FROM unnest(p_user_ids) AS r(id);
        RETURN;
    END IF;

    v_refusal := CASE
        WHEN v_coupon.starts_at IS NOT NULL AND v_now < v_coupon.starts_at THEN 'not_started'
        WHEN v_coupon.ends_at IS NOT NULL AND v_now >= v_coupon.ends_at THEN 'ended'
    END;

    -- The first free ticket after the hint, in number order: the free-ticket index answers it with one
    -- row, where a sequential scan would have to sort them all (see the header).
    v_after := v_coupon.issued_through;
    PERFORM 1 FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.issued_at IS NULL AND t.number > v_after
    ORDER BY t.number
    LIMIT 1;
    IF NOT FOUND THEN
        v_after := 0;
    END IF;

    RETURN QUERY
        WITH asked AS (
            SELECT r.id, min(r.position) AS position
            FROM unnest(p_user_ids) WITH ORDINALITY AS r(id, position)
            GROUP BY r.id
        ), had AS (
            SELECT t.user_id, t.number, t.code, t.issued_at
            FROM coupon_tickets AS t
            WHERE t.coupon_id = p_coupon_id AND t.user_id = ANY (p_user_ids)
        ), waiting AS (
            SELECT a.id, row_number() OVER (ORDER BY a.position) AS slot
            FROM asked AS a
            WHERE v_refusal IS NULL AND NOT EXISTS (SELECT 1 FROM had AS h WHERE h.user_id = a.id)
        ), free AS (
            SELECT f.number, row_number() OVER (ORDER BY f.number) AS slot
            FROM (
                SELECT t.number FROM coupon_tickets AS t
                WHERE t.coupon_id = p_coupon_id AND t.issued_at IS NULL AND t.number > v_after
                ORDER BY t.number
                LIMIT least((SELECT count(*) FROM waiting), v_coupon.quantity - v_coupon.issued_count)
                FOR UPDATE SKIP LOCKED
            ) AS f
        ), claimed AS (
            UPDATE coupon_tickets AS t
            SET user_id = w.id, issued_at = v_now
            FROM free AS f JOIN waiting AS w ON w.slot = f.slot
            WHERE t.coupon_id = p_coupon_id AND t.number = f.number
            RETURNING t.user_id, t.number, t.code, t.issued_at
        ), counted AS (
            -- The counter moves by what was claimed, which SKIP LOCKED may make fewer than asked.
            UPDATE coupons AS c
            SET issued_count = c.issued_count + n.claimed,
                issued_through = greatest(c.issued_through, n.highest)
            FROM (SELECT count(*) AS claimed, max(number) AS highest FROM claimed) AS n
            WHERE c.id = p_coupon_id AND n.claimed > 0
        ), told AS (
            -- The group's events in one INSERT of at most two rows (migrations/0014): its ticket.issued
            -- events in one row of arrays in number order, then coupon.sold_out when the group took the
            -- last ticket, the coupon as it is now; outbox_events reads the first row as an event per
            -- ticket. Written here, not by a trigger of the counter's UPDATE: on Citus that trigger fires
            -- before this INSERT, and the sell-out would come before the tickets that made it.
            INSERT INTO outbox (coupon_id, type, occurred_at, issued_at, name, quantity, issued_count, starts_at, ends_at,
                                redeem_until, created_at, numbers, codes, user_ids)
            SELECT p_coupon_id, e.type, v_now, e.issued_at, e.name, e.quantity, e.issued_count, e.starts_at, e.ends_at,
                   e.redeem_until, e.created_at, e.numbers, e.codes, e.user_ids
            FROM (
                SELECT 'ticket.issued' AS type, v_now AS issued_at, NULL::text AS name, NULL::int AS quantity,
                       NULL::int AS issued_count, NULL::timestamptz AS starts_at, NULL::timestamptz AS ends_at,
                       NULL::timestamptz AS redeem_until, NULL::timestamptz AS created_at,
                       array_agg(c.number ORDER BY c.number) AS numbers,
                       array_agg(c.code ORDER BY c.number) AS codes, array_agg(c.user_id ORDER BY c.number) AS user_ids,
                       1 AS place
                FROM claimed AS c
                HAVING count(*) > 0
                UNION ALL
                SELECT 'coupon.sold_out', NULL, v_coupon.name, v_coupon.quantity, v_coupon.quantity, v_coupon.starts_at,
                       v_coupon.ends_at, v_coupon.redeem_until, v_coupon.created_at, NULL, NULL, NULL, 2
                FROM (SELECT count(*) AS claimed FROM claimed) AS n
                WHERE n.claimed > 0 AND v_coupon.issued_count + n.claimed >= v_coupon.quantity
            ) AS e
            ORDER BY e.place
        )
        SELECT 'already_issued', p_coupon_id, h.number, h.code, h.user_id, h.issued_at, NULL::timestamptz, NULL::text,
               NULL::timestamptz, false
        FROM had AS h
        UNION ALL
        SELECT 'issued', p_coupon_id, c.number, c.code, c.user_id, c.issued_at, NULL::timestamptz, NULL::text,
               NULL::timestamptz, false
        FROM claimed AS c
        UNION ALL
        SELECT coalesce(v_refusal, 'sold_out'), p_coupon_id, NULL::int, NULL::text, a.id, NULL::timestamptz,
               NULL::timestamptz, NULL::text, NULL::timestamptz, false
        FROM asked AS a
        WHERE NOT EXISTS (SELECT 1 FROM had AS h WHERE h.user_id = a.id)
          AND NOT EXISTS (SELECT 1 FROM claimed AS c WHERE c.user_id = a.id);
END;
$$;

-- On a Citus cluster (0007) it runs on the worker that holds the coupon, also inside the explicit
-- transaction the service sends (BEGIN, issue_tickets, COMMIT), which needs force_delegation. There its
-- plans are made per call: Citus cannot route a generic plan's statement on a distributed table by its
-- parameters ("could not create distributed plan"), and with auto a call costs more, as PostgreSQL
-- keeps trying one (bench/results/citus.md).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        ALTER FUNCTION issue_tickets(bigint, text[]) SET plan_cache_mode = force_custom_plan;
        PERFORM create_distributed_function('issue_tickets(bigint,text[])', 'p_coupon_id', colocate_with => 'coupons',
                                            force_delegation => true);
    END IF;
END;
$$;
