"""A throwaway Redis (the Celery broker of the scale profile) for the tests; the launcher lives in
``launcher.servers``, which ``make demo-scale`` uses too."""

from launcher.servers import REDIS_SERVER, running_redis

__all__ = ["REDIS_SERVER", "running_redis"]
