"""The UIs a user looks at, in a real browser, on a data root the scheduler walked
(`make browser-test`, after `feedrank demo --scheduler`; deselected from `make test`).

    BROWSER_TEST_ROOT=ROOT [BROWSER_TEST_SHOTS=DIR] pytest -m browser tests/browser

Starts, on ROOT: Airflow's parts (as `feedrank airflow-ui`; or uses the UI at
BROWSER_TEST_AIRFLOW_URL, e.g. the load test's), an MLflow server on its tracking store
and `feedrank serve` on its feed store, each on a free loopback port, and stops them at the
end. Then, in Debian's chromium driven by Playwright:
- Airflow: logs in with the generated password, every DAG of dags/ is listed and on (its
  toggle checked), and every DAG run of the metadata DB is listed with its state;
- MLflow: an evaluation run's report.html shows its plots as images that loaded
  (naturalWidth > 0, as many as the file embeds), and the ranker's registry page shows the
  champion alias on the version the registry gives it;
- `feedrank serve`: `/` names the store's current version and links `/docs`, `/docs` lists
  the read path, and a user's feed page returns that version's items.
Each page is saved as a PNG under BROWSER_TEST_SHOTS (default ROOT/screenshots).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import urllib.request
from pathlib import Path

import pytest

from jobs import processes
from jobs.settings import load_settings
from warehouse.layout import executable

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
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
UI_TIMEOUT_MS = 90_000  # pages of a UI on a busy 2-core machine
RANKER = "feedrank-ranker"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings():
    home = os.environ.get("BROWSER_TEST_ROOT")
    if not home:
        pytest.fail("set BROWSER_TEST_ROOT to a data root `feedrank demo --scheduler` built")
    runs = Path(home) / "reports" / "scheduler_runs.json"
    if not runs.exists():
        pytest.fail(f"{runs} is missing: run `feedrank demo --scheduler` on {home} first")
    profile = (Path(home) / "profile").read_text().strip()
    return load_settings(profile, {"home": home})


@pytest.fixture(scope="module")
def shots(settings) -> Path:
    folder = Path(os.environ.get("BROWSER_TEST_SHOTS") or settings.root.home / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status < 500


@pytest.fixture(scope="module")
def airflow(settings):
    """(UI url, user, password) of Airflow on the root: BROWSER_TEST_AIRFLOW_URL's, or
    its parts started here on a free port."""
    from jobs.demo_scheduler import start_airflow

    logins = settings.root.airflow_home / "simple_auth_manager_passwords.json.generated"
    given = os.environ.get("BROWSER_TEST_AIRFLOW_URL")
    started = None if given else start_airflow(settings, processes.free_port())
    try:
        user, password = next(iter(json.loads(logins.read_text()).items()))
        yield (given or started.url).rstrip("/"), user, password
    finally:
        if started:
            started.stop()


def _service(settings, name: str, argv: list[str], port: int, path: str):
    env = {**os.environ, "FEEDRANK_HOME": str(settings.home), "PYTHONPATH": str(REPO)}
    running = processes.start(
        name,
        argv,
        env=env,
        log=settings.root.logs / f"browser-{name}.log",
        pid_file=settings.root.home / "tmp" / f"browser-{name}.pid",
        port=port,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_until(running, lambda: _answers(url + path), 180, f"{name} :{port}")
    except BaseException:
        processes.stop(running)
        raise
    return running, url


@pytest.fixture(scope="module")
def mlflow_url(settings):
    port = processes.free_port()
    argv = [str(executable("mlflow")), "server", "--backend-store-uri", settings.tracking_uri]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    running, url = _service(settings, "mlflow", argv, port, "/health")
    yield url
    processes.stop(running)


@pytest.fixture(scope="module")
def serve_url(settings):
    port = processes.free_port()
    argv = [sys.executable, "-m", "jobs.cli", "--profile", settings.profile, "serve"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    running, url = _service(settings, "serve", argv, port, "/healthz")
    yield url
    processes.stop(running)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make browser-test)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def _db_rows(path: Path, sql: str, *args) -> list[tuple]:
    con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _login(page, airflow) -> str:
    url, user, password = airflow
    page.goto(url + "/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    return url


def test_airflow_lists_every_dag_on_and_every_run_with_its_state(settings, airflow, page, shots):
    from jobs.demo_scheduler import dag_ids, dag_runs

    url = _login(page, airflow)
    page.goto(url + "/dags")
    page.wait_for_selector("[data-testid=toggle-pause]")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=toggle-pause]').length >= n",
        arg=len(dag_ids(settings.root)),
    )
    page.screenshot(path=shots / "airflow-dags.png", full_page=True)
    listed = page.eval_on_selector_all(
        "a[href^='/dags/']", "els => els.map(e => e.getAttribute('href'))"
    )
    listed = {h.removeprefix("/dags/") for h in listed if h.count("/") == 2}
    assert set(dag_ids(settings.root)) <= listed, "DAGs missing from the UI's list"
    toggles = page.eval_on_selector_all(
        "[data-testid=toggle-pause]", "els => els.map(e => e.dataset.state)"
    )
    assert toggles == ["checked"] * len(dag_ids(settings.root)), f"paused DAGs: {toggles}"

    expected = {(r.dag_id, r.run_id): r.state for r in dag_runs(settings.root)}
    assert expected, "the metadata DB holds no DAG run"
    page.goto(url + "/dag_runs?limit=100")
    page.wait_for_selector("td[data-testid=table-cell-dag_run_id]")
    page.wait_for_function(
        "n => document.querySelectorAll('td[data-testid=table-cell-dag_run_id]').length >= n",
        arg=len(expected),
    )
    page.screenshot(path=shots / "airflow-dag-runs.png", full_page=True)
    rows = page.eval_on_selector_all(
        "tbody tr",
        "rows => rows.map(r => Object.fromEntries([...r.querySelectorAll('td[data-testid]')]"
        ".map(td => [td.dataset.testid, td.innerText.trim()])))",
    )
    shown = {
        (r["table-cell-dag_display_name"], r["table-cell-dag_run_id"]): r["table-cell-state"]
        for r in rows
    }
    assert {k: v.lower() for k, v in shown.items()} == expected


def _report_run(settings) -> tuple[str, str, Path]:
    """(experiment id, run id, report.html) of an evaluation run that logged one (a ranker's
    first, as the user meets it from the registry)."""
    rows = _db_rows(
        settings.root.home / "mlflow" / "mlflow.db",
        "SELECT experiment_id, run_uuid, name, artifact_uri FROM runs "
        "WHERE lifecycle_stage = 'active' ORDER BY name LIKE 'rankers%' DESC, start_time",
    )
    for exp, run, _, uri in rows:
        report = Path(uri.removeprefix("file://")) / "report.html"
        if report.exists():
            return str(exp), run, report
    pytest.fail(f"no MLflow run of {settings.home} logged report.html")


def test_mlflow_report_shows_its_plots(settings, mlflow_url, page, shots):
    exp, run, report = _report_run(settings)
    embedded = len(re.findall(r"<img\b", report.read_text()))
    assert embedded > 0, f"{report} embeds no image"
    page.goto(f"{mlflow_url}/#/experiments/{exp}/runs/{run}/artifacts")
    page.get_by_text("report.html", exact=True).click()
    frame = page.frame_locator("iframe.mlflow-html-iframe")
    frame.locator("img").nth(embedded - 1).wait_for(state="attached")
    widths = frame.locator("img").evaluate_all(
        "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth, () => 0)))"
    )
    page.screenshot(path=shots / "mlflow-report.png", full_page=True)
    frame.locator("img").first.screenshot(path=shots / "mlflow-report-first-plot.png")
    assert len(widths) == embedded
    assert all(w > 0 for w in widths), f"plots that did not render: {widths}"


def test_mlflow_registry_page_shows_the_champion(settings, mlflow_url, page, shots):
    (version,) = _db_rows(
        settings.root.home / "mlflow" / "mlflow.db",
        "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
        RANKER,
    )[0]
    page.goto(f"{mlflow_url}/#/models/{RANKER}")
    alias = page.get_by_text(re.compile(r"^@\s*champion$"))  # the alias tag, not a reason
    row = page.locator("[role=row]", has=page.get_by_text(f"Version {version}", exact=True))
    row.get_by_text(re.compile(r"^@\s*champion$")).wait_for()
    page.screenshot(path=shots / "mlflow-registry.png", full_page=True)
    rows = page.locator("[role=row]", has=alias).count()
    assert rows == 1, f"{rows} versions of {RANKER} show the champion alias"


def test_serve_index_docs_and_a_feed_page(settings, serve_url, page, shots):
    db = settings.root.feed_store
    (current,) = _db_rows(
        db,
        "SELECT v.version FROM versions v JOIN pointer p ON p.vid = v.vid WHERE p.name = 'current'",
    )[0]
    (user,) = _db_rows(
        db,
        "SELECT MIN(user_id) FROM feed_users WHERE user_id >= 0 AND n_items > 0 AND vid = "
        "(SELECT vid FROM pointer WHERE name = 'current')",
    )[0]
    page.goto(serve_url + "/")
    page.screenshot(path=shots / "serve-index.png", full_page=True)
    assert f"feed version {current}" in page.inner_text("body")
    page.click("a[href='/docs']")
    page.wait_for_url("**/docs")
    page.screenshot(path=shots / "serve-docs.png", full_page=True)
    assert "/feed/{user_id}" in page.inner_text("body")
    page.goto(f"{serve_url}/feed/{user}")
    page.screenshot(path=shots / "serve-feed.png", full_page=True)
    feed = json.loads(page.inner_text("body"))
    assert feed["version"] == current and not feed["fallback"], feed
    assert feed["items"], f"user {user}'s feed page has no items: {feed}"
