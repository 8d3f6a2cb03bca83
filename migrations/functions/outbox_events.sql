-- The outbox's events, one row each, in feed order by (position, within): what the feed and the
-- webhooks send (the service reads a group's row whole and expands it itself, CouponEvent.events, to
-- the same events with the same ids: EventTests holds the two together), for anyone reading them in
-- SQL: the scripts that count them, an operator. A row of migrations/0014 (a group's ticket.issued) is
-- its arrays' events, numbered within from 1, each identified by the md5 of the row's id and its
-- number within (the same id at every read; issue_tickets draws no random id per ticket, which Citus
-- refuses in a statement that modifies its tables); any other row is one event, within 1, its id the
-- row's. row_events: how many events its row holds, so a reader knows whether it has taken the whole row.
CREATE OR REPLACE VIEW outbox_events AS
SELECT o.position, coalesce(e.within, 1)::int AS within, coalesce(cardinality(o.numbers), 1) AS row_events,
       CASE WHEN e.within IS NULL THEN o.id ELSE md5(o.id::text || '.' || e.within)::uuid END AS id,
       o.type, o.occurred_at, o.coupon_id,
       coalesce(e.user_id, o.user_id) AS user_id, coalesce(e.number, o.number) AS number,
       coalesce(e.code, o.code) AS code, o.issued_at, o.redeemed_at, o.order_id, o.hold_until,
       o.name, o.quantity, o.issued_count, o.starts_at, o.ends_at, o.redeem_until, o.created_at
FROM outbox AS o
LEFT JOIN LATERAL unnest(o.numbers, o.codes, o.user_ids) WITH ORDINALITY AS e(number, code, user_id, within) ON true;
