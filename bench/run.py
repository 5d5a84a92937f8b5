"""`make bench`: start embedded services if needed, then run the benchmarks in a fresh database.

``python -m bench.run network`` runs only the branch-network benchmarks (bench/network.py), printing
their results without writing bench/results.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

from tools.services import ROOT, ensure_postgres, ensure_redis, stop_redis

BENCH_DB = "cardmesh_bench"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def main() -> int:
    database_url, pg = ensure_postgres(BENCH_DB)
    redis_url, redis_process = ensure_redis("redis-bench")
    if os.environ.get("DATABASE_URL"):
        # Never benchmark inside the database the caller uses for real data.
        database_url = _with_database(database_url, BENCH_DB)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CACHE_KEY_PREFIX": "cardmesh-bench",
    }
    module = "bench.network" if sys.argv[1:] == ["network"] else "bench.suite"
    try:
        return subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env).returncode
    finally:
        stop_redis(redis_process)
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    sys.exit(main())
