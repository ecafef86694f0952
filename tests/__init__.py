"""The test suite: unit (pure, fast), api (Flask client, real Redis and databases), integration (live processes)."""
