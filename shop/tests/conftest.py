"""Browser fixtures: the storefront served by a live server thread, driven by Debian's Chromium.

The server commits for real (``live_db``), so the browser's requests, served from other threads with
their own connections, see what a test built; ``live_db`` empties the commerce tables afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.db import connections
from django.test.testcases import LiveServerThread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def live_server_port(live_db, monkeypatch):
    """A threaded WSGI server for the whole site on 127.0.0.1 and a free port (static files included)."""
    # Every request closes its database connection: a keep-alive thread of the server must not hold one
    # open when the test's cleanup truncates tables or the session drops the test database.
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)
    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield thread.port
    thread.terminate()


@pytest.fixture
def alpha_url(live_server_port) -> str:
    """The alpha shop's address; Chromium resolves every ``*.localhost`` name to the loopback address."""
    return f"http://alpha.{settings.PLATFORM_DOMAIN}:{live_server_port}"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing ({CHROMIUM}); the storefront browser tests need it. "
            "Install it with `apt-get install -y chromium` (Debian/Ubuntu)."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps its event loop running in this thread, which makes Django refuse ORM
    # calls here ("async context"). The calls are synchronous all the same, so say so while it runs.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
            # While that loop runs, this thread's database connections are context-local ones (asgiref),
            # distinct from the thread's usual connection: close them, or the test database stays in use.
            connections.close_all()


@pytest.fixture
def page_for(browser):
    """``page_for(base_url, width=…)``: a fresh browser context (own cookies) with clipboard access."""
    contexts = []

    def make(base_url: str, *, width: int = 1280, height: int = 900, dark: bool = False):
        context = browser.new_context(
            base_url=base_url,
            viewport={"width": width, "height": height},
            color_scheme="dark" if dark else "light",
            accept_downloads=True,
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
