-- Reference: the commit rate of one row updated by every transaction.
UPDATE bench_hot_row SET n = n + 1 WHERE id = 1;
