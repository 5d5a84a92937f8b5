"""`make test`: run pytest against embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set."""

from __future__ import annotations

import os
import subprocess
import sys

from tools.services import ROOT, ensure_postgres, ensure_redis, stop_redis


def main(argv: list[str]) -> int:
    database_url, pg = ensure_postgres()
    # A separate Redis instance from `make run`'s, so tests can run beside the demo.
    redis_url, redis_process = ensure_redis("redis-test")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    try:
        return subprocess.run([sys.executable, "-m", "pytest", *argv], cwd=ROOT, env=env).returncode
    finally:
        stop_redis(redis_process)
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
