-- What every ticket function answers (issue_tickets, redeem_ticket, restore_ticket, return_ticket in
-- migrations/functions/): the outcome, then the ticket as coupon_ticket_states shows it after the
-- call (its columns NULL when there is none; hold_lapsed: this call cleared a lapsed hold). One row
-- type, decoded in one place (TicketAnswer in Sources/).
CREATE TYPE ticket_answer AS (
    outcome     text,
    coupon_id   bigint,
    number      int,
    code        text,
    user_id     text,
    issued_at   timestamptz,
    redeemed_at timestamptz,
    order_id    text,
    hold_until  timestamptz,
    hold_lapsed boolean
);
