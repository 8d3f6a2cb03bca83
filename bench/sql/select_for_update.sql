-- Lock the coupon row, read the counter, claim ticket counter + 1, advance the counter.
\set user random(1, 2000000000)
BEGIN;
SELECT issued_count, quantity AS q FROM coupons WHERE id = :coupon FOR UPDATE \gset
\if :issued_count < :q
UPDATE coupon_tickets SET user_id = 'f' || :client_id || '-' || :user, issued_at = now()
WHERE coupon_id = :coupon AND number = :issued_count + 1;
UPDATE coupons SET issued_count = issued_count + 1 WHERE id = :coupon;
\endif
COMMIT;
