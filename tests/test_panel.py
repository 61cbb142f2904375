"""The control panel (``reenact live --panel``), tested as a user meets it: a real live
process driven by the puppet, its page in a real headless Chromium (Debian's
``chromium`` and ``chromium-driver``, through Selenium pointed at the system driver),
and plain HTTP for what a browser would hide (the token, the file system).

Without a browser installed the browser tests skip with a reason; CI installs one."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from models.config import ConfigError, load_config, read_panel_settings

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "puppet_model"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    """``reenact live --source puppet --panel`` in a subprocess, until ``stop()``."""

    def __init__(self, cwd: Path, *extra: str) -> None:
        self.port = _free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "reenact", "live", "--model", str(MODEL), "--source", "puppet", "--seconds", "600",
               "--no-virtual-camera", "--panel", "--set", f"panel.port={self.port}", "--json", "live.json", *extra]
        self.log = cwd / "live.log"
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.url = self._wait_for_url()
        self._wait_until_running()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            m = re.search(r"panel: (http://\S+)", self.log.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError("live ended before serving the panel:\n" + self.log.read_text()[-3000:])
            time.sleep(0.2)
        raise AssertionError("the panel never started:\n" + self.log.read_text()[-3000:])

    def _wait_until_running(self) -> None:
        """The panel is served before the model loads; its state answers 503 until live runs."""
        token = (re.search(r"token=([\w-]+)", self.url) or [None, None])[1]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                self.api("/api/state", token=token)
                return
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise
            if self.proc.poll() is not None:
                raise AssertionError("live ended while starting:\n" + self.log.read_text()[-3000:])
            time.sleep(0.2)
        raise AssertionError("live never started behind its panel:\n" + self.log.read_text()[-3000:])

    def api(self, path: str, body: dict | None = None, *, token: str | None = None) -> dict:
        url = self.url.split("?")[0].rstrip("/") + path + (f"?token={token}" if token else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("panel")
    session = Live(cwd)
    yield session
    session.stop()


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- in a real browser

@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI must install a browser: apt-get install chromium chromium-driver")
        pytest.skip("no headless browser here: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_the_page_shows_frames_and_its_controls_reach_the_pipeline(live, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(live.url)
    # Preview frames arrive: both MJPEG streams have decoded a picture.
    for img in ("output", "driver"):
        _wait(lambda: browser.execute_script(f"return document.getElementById('{img}').naturalWidth") > 0, what=f"{img} frames")
    _wait(lambda: "frames" in browser.find_element(By.ID, "status").text, what="the state to load")

    # A gain slider, moved from the keyboard alone, reaches the pipeline.
    before = live.api("/api/state")["pipeline_gains"]["mouth"]
    slider = browser.find_element(By.ID, "gain-mouth")
    slider.send_keys(Keys.ARROW_RIGHT * 5)
    # Five steps of 0.1, each its own change event: wait for the last one to land.
    _wait(lambda: abs(live.api("/api/state")["pipeline_gains"]["mouth"] - (before + 0.5)) < 0.01, what="the gain to reach +0.5")

    # Recalibrate: the pipeline measures the driver's neutral face again.
    cal = live.api("/api/state")["calibration"]
    browser.find_element(By.ID, "recalibrate").send_keys(Keys.ENTER)
    _wait(lambda: live.api("/api/state")["calibration"]["restarts"] > cal["restarts"], what="recalibration to start")
    _wait(lambda: live.api("/api/state")["calibration"]["completed"] > cal["completed"], what="a new neutral")

    # Pause from the keyboard: the loop stops generating.
    browser.find_element(By.ID, "pause").send_keys(Keys.ENTER)
    _wait(lambda: live.api("/api/state")["paused"] is True, what="pause")
    browser.find_element(By.ID, "pause").send_keys(Keys.ENTER)
    _wait(lambda: live.api("/api/state")["paused"] is False, what="resume")

    shot = os.environ.get("REENACT_PANEL_SCREENSHOT")
    if shot:  # the README's picture comes from this run
        time.sleep(2)
        browser.save_screenshot(shot)


@pytest.mark.slow
def test_what_the_panel_changes_is_kept_for_the_next_start(live):
    live.api("/api/control", {"action": "badge_position", "value": "top-left"})
    live.api("/api/control", {"action": "region", "name": "eyes", "value": 1.7})
    assert live.api("/api/control", {"action": "steady", "value": 0.3})["steady"] == pytest.approx(0.3)
    kept = read_panel_settings(live.log.parent / "panel-settings.toml")
    assert kept["output.badge_position"] == "top-left" and kept["live.gain_eyes"] == pytest.approx(1.7)
    assert kept["live.steady"] == pytest.approx(0.3)
    cfg = load_config(None, [], panel_settings=kept)
    assert cfg.output.badge_position == "top-left" and cfg.live.gain_eyes == pytest.approx(1.7)
    assert cfg.live.steady == pytest.approx(0.3)
    assert cfg.output.badge is True  # moved, never removed


@pytest.mark.slow
def test_the_panel_reaches_no_files_and_cannot_remove_the_badge(live):
    base = live.url.split("?")[0]
    for path in ("static/..%2F..%2Fpanel.py", "static/%2Fetc%2Fpasswd", "static/panel.py"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + path, timeout=10)
        assert e.value.code == 404
    for body in ({"action": "badge", "value": False}, {"action": "badge_position", "value": "off"},
                 {"action": "model", "value": "/etc"}):
        with pytest.raises(urllib.error.HTTPError) as e:
            live.api("/api/control", body)
        assert e.value.code == 400
    assert live.api("/api/state")["badge_position"] in ("top-left", "top-right", "bottom-left", "bottom-right")


@pytest.mark.slow
def test_bound_beyond_this_machine_every_request_needs_the_token(tmp_path):
    session = Live(tmp_path, "--set", "panel.host=0.0.0.0")
    try:
        token = re.search(r"token=([\w-]+)", session.url).group(1)
        for path in ("/", "/api/state", "/stream/output.mjpg"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(session.url.split("?")[0] + path.lstrip("/"), timeout=10)
            assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            session.api("/api/state", token="wrong")
        assert session.api("/api/state", token=token)["frames"] >= 0
    finally:
        session.stop()


def test_a_taken_port_is_one_clear_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        res = subprocess.run([sys.executable, "-m", "reenact", "live", "--model", str(MODEL), "--source", "puppet", "--panel",
                              "--no-virtual-camera", "--set", f"panel.port={port}"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "cannot listen" in last and str(port) in last and "Traceback" not in res.stderr


def test_the_page_opens_while_live_is_still_starting(tmp_path):
    """The server runs before the model loads (so its start-up never costs captured
    frames): the page is there at once, and the state says live is starting."""
    from live.panel import Panel
    from models.config import PanelConfig

    logged: list[str] = []
    panel = Panel(PanelConfig(port=_free_port(), models_dir=str(tmp_path)), (tmp_path / "panel-settings.toml", {}),
                  output_size=(640, 360), fps=30.0, info={}, open_virtual_camera=lambda fps: None, log=logged.append)
    try:
        panel.serve()
        assert logged == [f"panel: {panel.url}"]
        with urllib.request.urlopen(panel.url, timeout=10) as r:
            assert b"reenact" in r.read()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(panel.url + "api/state", timeout=10)
        assert e.value.code == 503 and "starting" in json.loads(e.value.read())["detail"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(panel.url + "api/control", data=b'{"action": "pause", "value": true}'),
                                   timeout=10)
        assert e.value.code == 503
    finally:
        panel.close()


@pytest.mark.parametrize("fps, preview_fps", [(30.0, 15.0), (30.0, 10.0), (25.0, 15.0), (60.0, 15.0)])
def test_the_preview_keeps_its_rate_when_frames_come_with_jitter(fps, preview_fps):
    """Frames every 1/fps s, each up to 2 ms early or late: the page gets preview_fps
    pictures a second (never more than the frames), not a rate that collapses whenever
    a frame comes a hair before its due time."""
    import numpy as np

    from live.panel import PanelTap

    rng = np.random.default_rng(0)
    now = [0.0]
    tap = PanelTap(size=(64, 36), fps=preview_fps, clock=lambda: now[0])
    frame = np.zeros((72, 128, 3), np.uint8)
    seconds = 20
    for i in range(int(seconds * fps)):
        now[0] = i / fps + rng.uniform(-0.002, 0.002)
        tap.send(frame, now[0])
    assert tap.output.serial == pytest.approx(seconds * min(fps, preview_fps), rel=0.02)


def test_the_settings_file_takes_only_what_the_panel_keeps(tmp_path):
    f = tmp_path / "panel-settings.toml"
    f.write_text('[live]\ngain_mouth = 1.5\n')
    assert load_config(None, [], panel_settings=read_panel_settings(f)).live.gain_mouth == 1.5
    f.write_text('[output]\nbadge = false\n')
    with pytest.raises(ConfigError, match="output.badge"):
        read_panel_settings(f)
    f.write_text('[live]\ngain_mouth = 9.0\n')
    with pytest.raises(ConfigError, match="live.gain_mouth"):
        load_config(None, [], panel_settings=read_panel_settings(f))
    assert read_panel_settings(tmp_path / "absent.toml") == {}


@pytest.mark.slow
def test_starting_the_virtual_camera_starts_it_or_says_why(live):
    try:
        state = live.api("/api/control", {"action": "output", "name": "virtual-camera", "value": True})
    except urllib.error.HTTPError as e:  # no virtual-camera driver on this machine: its line and fix, not a 500
        assert e.code == 409
        assert "virtual camera" in json.loads(e.read())["detail"]
    else:
        assert state["outputs"]["virtual-camera"] is True
        live.api("/api/control", {"action": "output", "name": "virtual-camera", "value": False})
    assert live.api("/api/state")["frames"] > 0  # the session runs on either way
