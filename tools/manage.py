"""Run a manage.py command against the embedded services (e.g. `make shell`)."""

import os
import subprocess
import sys

from tools.services import ROOT, ensure_postgres, ensure_redis


def main() -> int:
    database_url, _pg = ensure_postgres()
    redis_url, _redis = ensure_redis()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "manage.py", *sys.argv[1:]], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
