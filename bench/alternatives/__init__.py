"""python3 -m bench.alternatives.run: the Redis gate of the popular FCFS designs beside PostgreSQL's
issue_tickets, at the datastore level (bench/alternatives/run.sh)."""
