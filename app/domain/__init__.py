"""Pure domain logic: no I/O, no database, no Redis. Tested alone and fast."""
