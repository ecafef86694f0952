"""Infrastructure every process shares: the SQL engine, the Redis client and its key names, locks,
heartbeats, logging and time. Nothing here knows about tasks; services and workers build on it."""
