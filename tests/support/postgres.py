"""A throwaway PostgreSQL 15 cluster for the tests and benchmarks; the launcher lives in
``launcher.servers`` (``make demo-scale`` starts one too)."""

from launcher.servers import PG_BIN, PostgresServer, free_port, running_postgres

__all__ = ["PG_BIN", "PostgresServer", "free_port", "running_postgres"]
