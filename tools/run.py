"""`make run`: embedded services, migrations, demo seed, then web + worker + beat until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from tools.services import ROOT, ensure_postgres, ensure_redis, log, stop_redis

PYTHON = sys.executable


def main() -> int:
    port = os.environ.get("PORT", "8000")
    database_url, pg = ensure_postgres()
    redis_url, redis_process = ensure_redis()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
        "PUBLIC_PORT": port,
        "PYTHONUNBUFFERED": "1",
    }
    children: list[subprocess.Popen] = []

    def shutdown(*_args) -> None:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        stop_redis(redis_process)
        if pg is not None:
            pg.cleanup()

    try:
        log("migrating (public, template, branches)…")
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [PYTHON, "manage.py", "seed_demo", "--json"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        shops = json.loads(seeded.stdout.strip().splitlines()[-1])
        commands = {
            "web": [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}"],
            "worker": [PYTHON, "-m", "celery", "-A", "config", "worker", "-l", "info", "--concurrency", "2"],
            "beat": [PYTHON, "-m", "celery", "-A", "config", "beat", "-l", "info"],
        }
        for name, command in commands.items():
            children.append(subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True))
            log(f"started {name} (pid {children[-1].pid})")
        wait_until_healthy(port, children)
        banner(shops)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        log("a process exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        log("stopping…")
        return 0
    finally:
        shutdown()


def wait_until_healthy(port: str, children: list[subprocess.Popen], timeout: float = 60) -> None:
    """Print the banner only once web and worker answer, so it is the last thing on screen."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"})
    while time.monotonic() < deadline and all(child.poll() is None for child in children):
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (our own server)
                if json.load(response).get("status") == "ok":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    log("still waiting for web/worker health; see the log above")


def banner(shops: list[dict]) -> None:
    lines = ["", "Cardmesh is running. Open:"]
    for shop in shops:
        lines.append(f"  {shop['name']:<14} {shop['url']:<32} admin: {shop['admin']}")
    lines.append("")
    lines.append("Logins (demo only):")
    for shop in shops:
        lines.append(f"  {shop['name']:<14} {shop['login']} / {shop['password']}")
    lines.append(f"\nOpen a new shop at {shops[0]['url']}signup/  ·  health: {shops[0]['url']}healthz")
    lines.append("Press Ctrl-C to stop everything.\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
