"""`make test`: run pytest against embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set."""

from __future__ import annotations

import os
import subprocess
import sys

from tools.services import ROOT, ensure_postgres, ensure_redis, stop_redis


def main(argv: list[str]) -> int:
    database_url, pg = ensure_postgres()
    # A separate Redis instance from `make run`'s, so tests can run beside the demo. TEST_RUN_ID
    # gives concurrent runs (several checkouts, parallel CI jobs) their own database and Redis.
    run_id = os.environ.get("TEST_RUN_ID", "")
    redis_url, redis_process = ensure_redis(f"redis-test-{run_id}" if run_id else "redis-test")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    if run_id:
        env["TEST_DATABASE_NAME"] = f"test_cardmesh_{run_id}"
    try:
        return subprocess.run([sys.executable, "-m", "pytest", *argv], cwd=ROOT, env=env).returncode
    finally:
        stop_redis(redis_process)
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
