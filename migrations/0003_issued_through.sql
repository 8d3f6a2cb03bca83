-- coupons.issued_through: a hint, the highest ticket number issued so far, where issue_tickets
-- (migrations/functions/issue_tickets.sql) starts its claim; set here from the tickets already issued.

ALTER TABLE coupons ADD COLUMN issued_through int NOT NULL DEFAULT 0;

UPDATE coupons AS c
SET issued_through = coalesce((SELECT max(t.number) FROM coupon_tickets AS t
                               WHERE t.coupon_id = c.id AND t.issued_at IS NOT NULL), 0);
