-- One statement: advance the counter only while below the quantity, and claim the ticket it names.
\set user random(1, 2000000000)
WITH counted AS (
    UPDATE coupons SET issued_count = issued_count + 1
    WHERE id = :coupon AND issued_count < quantity
    RETURNING issued_count
)
UPDATE coupon_tickets AS t SET user_id = 'c' || :client_id || '-' || :user, issued_at = now()
FROM counted WHERE t.coupon_id = :coupon AND t.number = counted.issued_count;
