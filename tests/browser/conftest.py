"""A real JupyterLab (127.0.0.1, a free port, a token) and headless Chromium for the browser tests.

The lessons are copied to a temporary root: `trusted/` (signed with a key of our own, as `make setup` signs
the course's notebooks), `untrusted/` (like a fresh clone) and `running/` (signed; the lessons the tests run).
Running them there leaves the repository's notebooks untouched. Everything started here is stopped here:
kernels (via the REST API), the server, the browser.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# QF_NOTEBOOKS=dir tests other copies of the lessons (e.g. freshly executed ones) without touching notebooks/.
NOTEBOOKS = sorted(Path(os.environ.get("QF_NOTEBOOKS", ROOT / "notebooks")).glob("*.ipynb"))
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 180_000  # the machine is shared: a click may wait for a busy kernel
SERVER_START_S = 180

LAB_CONFIG = {
    "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    "ServerApp": {"open_browser": False},
}
# Render every cell (no windowing), so each output is in the DOM; don't ask about news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lab:
    """A running JupyterLab server: its base URL, token, notebook folders and REST helpers."""

    def __init__(self, root: Path, port: int, token: str, log: Path):
        self.root, self.port, self.token, self.log = root, port, token, log
        self.url = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str) -> object:
        """JSON from the server's REST API (authenticated with the token)."""
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, folder: str, notebook: Path) -> str:
        """Lab URL opening one lesson in a fresh workspace (no tabs restored from the previous test)."""
        return f"{self.url}/lab/tree/{folder}/{notebook.name}?reset&token={self.token}"

    def shut_down_kernels(self, paths: set[str] | None = None) -> None:
        """Stop the kernels of the notebooks at these paths (all kernels this server started if None)."""
        for session in self.request("GET", "/api/sessions"):
            if paths is None or session["path"] in paths:
                self.request("DELETE", f"/api/sessions/{session['id']}")
        if paths is None:
            for kernel in self.request("GET", "/api/kernels"):
                self.request("DELETE", f"/api/kernels/{kernel['id']}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    """JupyterLab on 127.0.0.1 with a random token, serving trusted/ and untrusted/ copies of the lessons."""
    root = tmp_path_factory.mktemp("lab")
    home = root / ".jupyter-home"  # config, data (signing key and trust db) and runtime of this server only
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "OMP_NUM_THREADS": "2",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    (home / "config").mkdir(parents=True)
    (home / "config" / "jupyter_server_config.json").write_text(json.dumps(LAB_CONFIG))
    for name, settings in LAB_SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    for folder in ("trusted", "untrusted", "running"):
        (root / folder).mkdir()
        for notebook in NOTEBOOKS:
            shutil.copy(notebook, root / folder / notebook.name)
    for notebook in (root / "untrusted").glob("*.ipynb"):
        # Trust is stored per content hash, so an identical copy of a signed notebook is trusted too: a
        # metadata key makes these differ from the signed ones, as a fresh clone differs from anything signed.
        content = json.loads(notebook.read_text())
        content["metadata"]["qf_browser_test"] = "untrusted copy"
        notebook.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    signed = [str(path) for folder in ("trusted", "running") for path in sorted((root / folder).glob("*.ipynb"))]
    subprocess.run([sys.executable, "-m", "jupyter", "trust", *signed], env=env, check=True, capture_output=True)
    port, token = _free_port(), secrets.token_hex(16)
    log = root / "lab.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with open(log, "wb") as log_file:
        server = subprocess.Popen(command, env=env, cwd=root, stdout=log_file, stderr=subprocess.STDOUT)
    lab = Lab(root, port, token, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{lab.log_tail()}")
            try:
                lab.request("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in {SERVER_START_S} s:\n{lab.log_tail()}")
                time.sleep(0.5)
        yield lab
    finally:
        try:
            lab.shut_down_kernels()
        except OSError:
            pass
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by playwright (no browser download)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: install the Debian package 'chromium' (make test-browser does, "
                    "as root) or set CHROMIUM=/path/to/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A browser page on the lab that records console errors, page errors and requests leaving loopback."""

    def __init__(self, page, lab: Lab):
        self.page, self.lab = page, lab
        self.opened: set[str] = set()  # notebook paths (relative to the lab root) this page opened
        self.console_errors: list[str] = []
        self.outside_requests: list[str] = []
        page.on("console", lambda message: message.type == "error"
                and self.console_errors.append(f"{message.text} ({message.location.get('url', '')})"))
        page.on("pageerror", lambda error: self.console_errors.append(f"page error: {error}"))
        page.on("request", lambda request: self._record(request.url))

    def goto(self, folder: str, notebook: Path) -> None:
        """Open a lesson copy in Lab (its kernel is stopped when the page closes)."""
        self.opened.add(f"{folder}/{notebook.name}")
        self.page.goto(self.lab.notebook_url(folder, notebook))

    def close(self) -> None:
        """Close the browser context and stop the kernels of the notebooks it opened."""
        self.page.context.close()
        self.lab.shut_down_kernels(self.opened)

    def _record(self, url: str) -> None:
        if not url.startswith((self.lab.url, "data:", "blob:", "about:")):
            self.outside_requests.append(url)

    def assert_clean(self) -> None:
        """No console or page errors, and nothing fetched from outside this machine."""
        assert not self.console_errors, "browser console errors:\n" + "\n".join(self.console_errors)
        assert not self.outside_requests, f"requests left the machine: {self.outside_requests}"

    def screenshot(self, name: str, locator=None) -> Path:
        """Save a PNG of the page (or of one element) to build/screenshots/."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        (locator or self.page).screenshot(path=str(path))
        return path


def new_page(browser, lab: Lab) -> Page:
    """A page in a browser context of its own (own cookies, own workspace), with generous timeouts."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    return Page(context.new_page(), lab)


@pytest.fixture(scope="session")
def page_factory(browser, lab):
    """new_page for fixtures that keep a page longer than one test (the caller closes it)."""
    return lambda: new_page(browser, lab)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell that its test failed."""
    outcome = yield
    setattr(item, f"report_{call.when}", outcome.get_result())


@pytest.fixture
def page(browser, lab, request):
    """A fresh page per test; afterwards its kernels are stopped (tests call page.assert_clean())."""
    wrapped = new_page(browser, lab)
    try:
        yield wrapped
    finally:
        if getattr(request.node, "report_call", None) is not None and request.node.report_call.failed:
            wrapped.screenshot("failed_" + re.sub(r"\W+", "_", request.node.name))
        wrapped.close()
