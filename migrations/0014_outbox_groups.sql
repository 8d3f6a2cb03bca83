-- A group's ticket.issued events in one outbox row (bench/results/outbox-rows.md): issue_tickets
-- writes the tickets' numbers, codes and users as arrays in one order, and what they share (type,
-- occurred_at, issued_at, the row's id) once. The view outbox_events (migrations/functions/) reads
-- every row as its events, numbered 1.. within the row, each with an id of its own drawn from the
-- row's; a cursor names an event within its row ("P.K": the first K events of row P), and
-- webhooks.delivered_within records how far into the row at delivered_through an endpoint has
-- acknowledged (NULL: all of it).
-- Columns added nullable, without a default: no rewrite, the table's lock held for a moment.
ALTER TABLE outbox ADD COLUMN numbers int[], ADD COLUMN codes text[], ADD COLUMN user_ids text[];
ALTER TABLE webhooks ADD COLUMN delivered_within int;
-- A group's row holds its tickets' codes and users: about 40 bytes a ticket, past the 2 kB at which
-- PostgreSQL would compress it and move it to the TOAST table by default (a try at pglz per group,
-- and rows and index entries of the TOAST table). Kept in line up to a page; larger groups only
-- are toasted. A storage parameter: taken under a lock that lets writes go on.
ALTER TABLE outbox SET (toast_tuple_target = 8160);
