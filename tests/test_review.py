"""The review page (issue 7), driven in headless Chromium against the service running in-process.

Why a real browser: what the page must get right is browser behaviour - SSE read through
fetch() with the key in a header, clips fetched with the key and played from blob: URLs
(H.264 that Chromium decodes), text from the API kept out of the markup under a CSP with
Trusted Types. A DOM emulator would test none of that.

The service is the real one (`build_service`: rules, store, clip writer, API, SSE) on the chair
clip of ../shared/media, with the models replaced by their recorded output (`ReplayAnalysers`
of tests/test_serve.py), so it needs no weights and runs in seconds: the post empties at
~9.9 s of stream time and d1.reception.02 opens at ~10.4 s.

Needs Debian's chromium and chromedriver (`scripts/install-browser.sh`; CI runs it) and the
selenium package; skipped with the reason when any is missing. $POSTWATCH_CHROMIUM and
$POSTWATCH_CHROMEDRIVER point at other binaries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import media_path
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_delivery import site, violation
from test_serve import ABANDONED, CHAIR, ReplayAnalysers, auth, decode, write_site

from rules.violation import Violation
from service.api import create_app
from service.delivery import EventHub, add_live_routes
from service.keys import create_key
from service.review_routes import REVIEW_DIR, add_review_routes
from service.serve import BackgroundServer, build_service, create_key_command
from service.store import AlertStore

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home at start; the closed network refuses it, slowly.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers have a tiny /dev/shm
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1400,1000",
)
INSTALL_HINT = "run scripts/install-browser.sh (the CI step does)"
KEY_NAME = "review-test"
XSS = '<img src=x onerror="window.__pwned = 1">hands in pockets'


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which(os.environ.get("POSTWATCH_CHROMIUM") or "chromium")
    driver = shutil.which(os.environ.get("POSTWATCH_CHROMEDRIVER") or "chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: {INSTALL_HINT}")
    return str(chromium), str(driver)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, with a throwaway profile."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (the browser tests drive Chromium with it)"
    )
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, driver_path = _browser_binaries()
    profile = tempfile.mkdtemp(prefix="postwatch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = DriverService(executable_path=driver_path, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _without_comments(js: str) -> str:
    """The script's code: its comments explain *why* it avoids innerHTML, and name it doing so."""
    js = re.sub(r"/\*.*?\*/", "", js, flags=re.S)
    return re.sub(r"^\s*//.*$", "", js, flags=re.M)


# -- without a browser -------------------------------------------------------------------------


def test_the_page_is_static_public_and_served_with_a_strict_policy() -> None:
    """The page carries no data (so it needs no key), and scripts run only from our own files."""
    app = FastAPI()
    add_review_routes(app)
    add_review_routes(app)  # idempotent: wired by the service and again by a test
    assert sum(getattr(r, "path", None) == "/review" for r in app.routes) == 2  # the redirect and the mount
    client = TestClient(app)
    moved = client.get("/review", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "review/"
    page = client.get("/review/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "require-trusted-types-for 'script'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "<script>" not in page.text and " style=" not in page.text  # no inline code for the CSP to allow
    for name in ("app.js", "style.css"):
        assert client.get(f"/review/{name}").status_code == 200
    assert client.get("/review/../review_routes.py").status_code == 404
    code = _without_comments((REVIEW_DIR / "app.js").read_text(encoding="utf-8"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code
    assert "new EventSource" not in code  # it cannot send the key header
    for external in ("http://", "https://", "//cdn"):
        assert external not in (REVIEW_DIR / "index.html").read_text(encoding="utf-8")


# -- in Chromium --------------------------------------------------------------------------------------


def _wait(driver: Any, predicate: Any, timeout: float, what: str) -> Any:
    """Poll `predicate`; live events re-render the list and the detail, so an element found a
    moment ago may be gone (stale): that counts as "not yet", not as a failure."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(lambda d: predicate(d), message=f"timed out after {timeout:.0f} s waiting for {what}")


def _click(driver: Any, selector: str, what: str) -> None:
    def click(d: Any) -> bool:
        element = _shown(d, selector)
        if element is None:
            return False
        element.click()
        return True

    _wait(driver, click, 10, what)


def _listed(driver: Any) -> list[int]:
    """The alert ids in the list, top to bottom (read in one go: the list re-renders live)."""
    return driver.execute_script(LISTED)


def _text(driver: Any, selector: str) -> str:
    return _wait(driver, lambda d: (e := _shown(d, selector)) is not None and e.text, 10, selector)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _shown(driver: Any, selector: str) -> Any:
    found = [e for e in _css(driver, selector) if e.is_displayed()]
    return found[0] if found else None


LISTED = "return [...document.querySelectorAll('#alerts li')].map((li) => Number(li.dataset.id))"
SNAPSHOT_SHOWN = "const img = document.getElementById('snapshot'); return !!img && img.naturalWidth > 0"
PLAY = """
const done = arguments[arguments.length - 1];
const video = document.getElementById("clip");
const started = performance.now();
video.play().then(() => {
  const first = video.currentTime;
  const check = () => {
    if (video.currentTime > first + 0.3 || performance.now() - started > 8000) {
      done({readyState: video.readyState, start: first, now: video.currentTime,
            duration: video.duration, src: video.currentSrc.slice(0, 5), error: null});
    } else setTimeout(check, 50);
  };
  check();
}).catch((e) => done({error: String(e), readyState: video.readyState,
                      code: video.error && video.error.code}));
"""


@pytest.mark.media
def test_review_page_lists_streams_plays_and_reviews_alerts(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    chair = media_path(CHAIR)
    began = time.monotonic()
    site_path = write_site(tmp_path, "review", {"chair": str(chair)})
    db = f"sqlite:///{tmp_path / 'site.db'}"
    service = build_service(
        site_path, db=db, out_dir=tmp_path / "media", realtime=False, analysers=ReplayAnalysers(),
        clip_before_s=2.0, clip_after_s=1.5, keepalive_s=1.0,
    )  # fmt: skip
    add_review_routes(service.app)
    key = create_key_command(db, "manager", ["review"], name=KEY_NAME)
    # An older alert from before the page opened, with markup in its text.
    seeded = service.store.open_alert(
        Violation("d5.stance.01", "chair", 3, 1.0, end_s=4.5, confidence=0.7, message=XSS), "chair", "review"
    )
    d = browser
    d.get_log("browser")  # start with an empty log: earlier tests may have left expected errors
    try:
        with (
            BackgroundServer(service.app, service.hub) as server,
            httpx.Client(base_url=server.url, headers=auth(key), timeout=10) as api,
        ):
            # 1. The page loads and asks for a key; nothing is listed without one.
            d.get(server.url + "/review")
            assert d.current_url == server.url + "/review/"
            assert d.title == "postwatch · alert review"
            assert _shown(d, "#key") is not None and _shown(d, "#review") is None  # the list stays hidden
            assert not _css(d, "#alerts li")
            assert "API key" in _shown(d, "#key-panel").text

            # 2. A wrong key is refused and the prompt says so.
            _shown(d, "#key").send_keys("pw_wrong")
            _shown(d, "#key-form button").click()
            _wait(d, lambda d: _shown(d, "#key-error"), 10, "the refusal")
            assert "refused" in _text(d, "#key-error")

            # 3. The right key lists the alerts from the API and opens the live stream.
            field = _shown(d, "#key")
            field.clear()
            field.send_keys(key)
            _shown(d, "#key-form button").click()
            row = _text(d, f'#alerts li[data-id="{seeded.id}"]')
            assert "d5.stance.01" in row and "track 3" in row
            assert d.execute_script("return sessionStorage.getItem('postwatch.review.key')") == key
            _wait(d, lambda d: _shown(d, "#live").get_attribute("data-state") == "connected", 30, "SSE")
            cameras = [o.get_attribute("value") for o in Select(_shown(d, "#f-camera")).options]
            assert cameras == ["", "chair"]
            d.execute_script("window.__samePage = true")

            # 4. The camera raises d1.reception.02: it appears without a reload.
            service.start()
            row_of = f'#alerts li[data-clause="{ABANDONED}"]'
            alert_id, text = _wait(
                d, lambda d: (e := _shown(d, row_of)) and (int(e.get_attribute("data-id")), e.text), 90, "it"
            )
            assert "new" in text and d.execute_script("return window.__samePage") is True
            assert alert_id > seeded.id and _listed(d)[0] == alert_id  # newest first

            # 5. Its clip plays once written (the page gets alert.media live), the clause beside it.
            _click(d, f'#alerts li[data-id="{alert_id}"] button', "the live alert")
            _wait(d, lambda d: _shown(d, f'#detail-title[data-id="{alert_id}"]'), 10, "the alert's detail")
            # Generous waits: the clip is encoded after the alert's seconds-after window, on a busy machine.
            _wait(d, lambda d: _shown(d, '#clip[data-loaded="true"]'), 90, "the clip in the page")
            # The file has ended by now: once closed, nothing more re-renders the detail under the test.
            _wait(d, lambda d: "closed" in _text(d, "#detail-title"), 30, "the alert to close")
            played = d.execute_async_script(PLAY)
            assert played["error"] is None, played
            assert played["readyState"] >= 2 and played["now"] > played["start"] + 0.3, played
            assert played["src"] == "blob:"  # fetched with the key, not a bare URL
            detail = api.get(f"/alerts/{alert_id}").json()
            _, _, clip_s = decode(api.get(detail["clip_url"]).content, tmp_path)
            assert played["duration"] == pytest.approx(clip_s, abs=0.3)
            # 2 s before the opening + up to 1.5 s after: the file ends ~0.4 s after it, and the clip with it.
            assert 2.0 <= played["duration"] <= 3.8
            clause = detail["clause_text"]
            assert _text(d, "#clause-zh") == "\n".join(clause["text_zh"])
            assert _text(d, "#clause-gloss") == clause["gloss"]
            _wait(d, lambda d: d.execute_script(SNAPSHOT_SHOWN), 10, "the snapshot")
            facts = _text(d, "#facts")
            assert "chair" in facts and "the post itself" in facts and "Duration" in facts

            # 6. Acknowledge with a comment: the API has it, under the key's name.
            _shown(d, "#ack-comment").send_keys("Spoke to the desk lead; cover arranged.")
            _shown(d, "#ack-button").click()
            _wait(d, lambda d: _shown(d, "#ack-done"), 10, "the acknowledgement")
            acked = api.get(f"/alerts/{alert_id}").json()
            assert acked["acknowledged"] and acked["ack"]["by"] == KEY_NAME
            assert acked["ack"]["comment"] == "Spoke to the desk lead; cover arranged."

            # 7. The older alert: its markup shows as text, and it is marked a false alarm.
            _click(d, f'#alerts li[data-id="{seeded.id}"] button', "the older alert")
            _wait(d, lambda d: _shown(d, f'#detail-title[data-id="{seeded.id}"]'), 10, "the older alert")
            assert XSS in _text(d, "#facts")
            assert not _css(d, "#facts img") and d.execute_script("return window.__pwned") is None
            _shown(d, "#fa-comment").send_keys("A coat, not hands in pockets.")
            _shown(d, "#fa-button").click()
            _wait(d, lambda d: _shown(d, "#fa-done"), 10, "the false-alarm mark")
            marked = api.get(f"/alerts/{seeded.id}").json()
            assert marked["false_alarm"] and not marked["acknowledged"]
            assert marked["false_alarm_review"]["comment"] == "A coat, not hands in pockets."
            assert "false alarm" in _text(d, f'#alerts li[data-id="{seeded.id}"]')

            # 8. Filters go to the API: unacknowledged only drops the acknowledged alert.
            Select(_shown(d, "#f-ack")).select_by_value("false")
            _wait(d, lambda d: alert_id not in _listed(d), 10, "the filtered list")
            assert seeded.id in _listed(d)
            Select(_shown(d, "#f-ack")).select_by_value("")
            Select(_shown(d, "#f-clause")).select_by_value(ABANDONED)
            _wait(d, lambda d: _listed(d) == [alert_id], 10, "the clause filter")

            # 9. The camera run's report (its absence) is listed and downloads with the key; a
            # front-desk post has no guard audit.
            _shown(d, "#reports-refresh").click()
            text = _wait(d, lambda d: (e := _shown(d, "#report-list li")) and e.text, 10, "the report")
            assert "review / chair" in text and "ended" in text
            assert not _css(d, '#report-list button[data-kind="audit"]')
            _shown(d, '#report-list button[data-kind="report"]').click()
            _wait(
                d,
                lambda d: (
                    _shown(d, '#report-list button[data-kind="report"]').get_attribute("data-state") == "done"
                ),
                10,
                "the report's download",
            )

            # No CSP / Trusted Types violation, no script error, no failed request but the wrong key's.
            errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
            assert [m for m in errors if "status of 401" not in m] == [], errors
            assert errors, "the wrong key's 401s should be logged: is the browser log read at all?"
    finally:
        service.stop()
        d.execute_script("sessionStorage.clear()")
    assert time.monotonic() - began < 60


def test_the_live_list_resumes_after_a_dropped_stream_and_a_trainer_cannot_review(
    browser: Any, tmp_path: Path
) -> None:
    """The service restarts under the page: the page reconnects with Last-Event-ID and the hub
    replays what it missed (no list reload). A trainer's key reads but may not review: the page
    says so instead of failing silently. No camera here, so this runs without ../shared/media."""
    store = AlertStore(f"sqlite:///{tmp_path / 'shop.db'}")
    app = create_app(store, site("shop"))
    hub = EventHub(store, keepalive_s=0.5)
    add_live_routes(app, hub)
    add_review_routes(app)
    key = create_key(store, "trainer", ["shop"])
    d = browser
    first = BackgroundServer(app).start()  # no hub: stopping the server must not end the hub
    second = None
    try:
        d.get(first.url + "/review/")
        _shown(d, "#key").send_keys(key)
        _shown(d, "#key-form button").click()
        _wait(d, lambda d: _shown(d, "#live").get_attribute("data-state") == "connected", 30, "SSE")
        before = store.open_alert(violation("d5.stance.01", "desk"), "desk", "shop")
        _wait(d, lambda d: _listed(d) == [before.id], 10, "the first live alert")
        d.execute_script("window.__samePage = true")

        first.stop()  # the connection drops ...
        _wait(d, lambda d: _shown(d, "#live").get_attribute("data-state") == "retrying", 10, "the drop")
        missed = store.open_alert(violation("d5.stance.02", "desk", track=2), "desk", "shop")  # ... meanwhile
        second = BackgroundServer(app, port=first.port).start()
        _wait(d, lambda d: _listed(d) == [missed.id, before.id], 15, "the replayed alert")
        assert d.execute_script("return window.__samePage") is True  # replayed, not reloaded
        assert _shown(d, "#live").get_attribute("data-state") == "connected"

        _click(d, f'#alerts li[data-id="{missed.id}"] button', "the replayed alert")
        _wait(d, lambda d: _shown(d, f'#detail-title[data-id="{missed.id}"]'), 10, "its detail")
        _shown(d, "#ack-button").click()
        refusal = _wait(d, lambda d: (e := _shown(d, "#ack-box .error")) and e.text, 10, "the refusal")
        assert "Not allowed for this key" in refusal and "alerts:review" in refusal
        assert not store.get_alert(missed.id).acknowledged  # type: ignore[union-attr]
        assert _shown(d, "#reports") is None  # camera reports are not for trainers (403): hidden
    finally:
        d.execute_script("sessionStorage.clear()")
        for server in (first, second):
            if server is not None:
                server.stop()
        hub.close()
        store.close()


def test_a_clip_attached_while_the_detail_loads_is_shown(browser: Any, tmp_path: Path) -> None:
    """The race that once left a CI run waiting 90 s for a clip: the clip is attached (and
    alert.media sent) after the page asked for the alert's detail but before the answer came,
    so the answer predates the clip. The page must ask again, not show "being recorded" for good."""
    import asyncio

    import numpy as np
    from starlette.requests import Request

    from service.clips import ClipEncoder

    encoder = ClipEncoder(tmp_path / "clip.mp4", 10.0, (160, 120))
    for i in range(15):
        encoder.write(np.full((120, 160, 3), 8 * i, np.uint8), i / 10)
    encoder.close()
    store = AlertStore(f"sqlite:///{tmp_path / 'shop.db'}")
    app = create_app(store, site("shop"), media_root=tmp_path)
    hub = EventHub(store, keepalive_s=0.5)
    add_live_routes(app, hub)
    add_review_routes(app)
    key = create_key(store, "manager", ["shop"])
    alert = store.open_alert(violation("d5.stance.01", "desk"), "desk", "shop")
    overtaken: list[int] = []

    @app.middleware("http")
    async def attach_during_the_first_detail(request: Request, call_next: Any) -> Any:
        response = await call_next(request)  # the detail, computed before the clip exists
        if request.url.path == f"/alerts/{alert.id}" and not overtaken:
            overtaken.append(alert.id)
            await asyncio.to_thread(store.set_media, alert.id, clip="clip.mp4")
            await asyncio.sleep(1.0)  # alert.media reaches the page before this answer does
        return response

    d = browser
    server = BackgroundServer(app).start()
    try:
        d.get(server.url + "/review/")
        _shown(d, "#key").send_keys(key)
        _shown(d, "#key-form button").click()
        _wait(d, lambda d: _shown(d, "#live").get_attribute("data-state") == "connected", 30, "SSE")
        _click(d, f'#alerts li[data-id="{alert.id}"] button', "the alert")
        _wait(d, lambda d: _shown(d, '#clip[data-loaded="true"]'), 15, "the clip attached meanwhile")
        assert overtaken == [alert.id]  # the race did happen
        assert _shown(d, "#clip-missing") is None
    finally:
        d.execute_script("sessionStorage.clear()")
        server.stop()
        hub.close()
        store.close()
