-- The wall and the analysts run short queries over recent partitions. PostgreSQL's JIT
-- compiler spends more time compiling such a query (60 ms seen on "latest value per sensor")
-- than it saves, so it is off for the reading roles.
ALTER ROLE pantau_grafana SET jit = off;
ALTER ROLE pantau_analyst SET jit = off;
