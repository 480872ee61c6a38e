"""gunicorn settings and hooks for tests/test_prefork.py: each process writes its counters
when it exits (workers in worker_exit, the master in on_exit), after closing its client."""

from typing import Any

preload_app = True
workers = 4
worker_class = "sync"
# Longer than anything the test does: a worker killed by gunicorn would lose its counters.
timeout = 120
graceful_timeout = 60


def worker_exit(server: Any, worker: Any) -> None:
    import prefork_wsgi

    prefork_wsgi.dump_stats("worker")


def on_exit(server: Any) -> None:
    import prefork_wsgi

    prefork_wsgi.dump_stats("master")
