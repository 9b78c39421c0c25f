"""A throwaway PostgreSQL 15 cluster for the tests and benchmarks; the launcher lives in
``include.local_servers`` (``make demo-scale`` starts one too)."""

from include.local_servers import PG_BIN, PostgresServer, free_port, running_postgres

__all__ = ["PG_BIN", "PostgresServer", "free_port", "running_postgres"]
