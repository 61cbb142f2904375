"""``reenact live --panel``: a control panel in the browser, served by the live process.

    PanelTap      the loop's side: keeps the newest output and driver picture, at most
                  ``preview_fps`` a second, shrunk to the preview size. It never waits:
                  the newest frame wins, and the loop pays one resize per kept frame.
    SettingsFile  what the panel changes and keeps across restarts (TOML, beside
                  config.toml; ``models.config.PANEL_KEYS`` only).
    create_app    the web app (FastAPI): the page and its assets (shipped in
                  live/panel_static, no CDN), two MJPEG streams, the state as JSON and
                  one endpoint for every control. Controls go through ``Controls``,
                  the interface the window keys and the terminal drive too.
    PanelServer   uvicorn on its own thread, on a socket bound before the session starts
                  (a port in use is an error before any camera opens).

Safe by default: bound to 127.0.0.1. Bound to any other address, every request must
carry the token printed at start (``?token=`` or the ``X-Reenact-Token`` header). The
badge can be moved, never switched off, from the panel; the only files the panel
reaches are the model directories under ``panel.models_dir`` and recordings it makes
in ``panel.recordings_dir``.
"""
from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Request  # module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from live.controls import Controls
from live.output import Mode
from models.config import PANEL_KEYS, PanelConfig
from models.errors import DeviceError, ReenactError
from models.files import atomic_write_text
from models.hotpath import per_frame

STATIC = Path(__file__).resolve().parent / "panel_static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class PanelError(DeviceError):
    """The panel cannot start (its port is taken, its address is not this machine's)."""


class Picture:
    """The newest picture of one stream, JPEG-encoded on demand by the server's thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self.serial = 0

    def put(self, image: np.ndarray) -> None:
        with self._cond:
            self._image, self.serial = image, self.serial + 1
            self._cond.notify_all()

    def wait_newer(self, serial: int, timeout: float) -> tuple[np.ndarray | None, int]:
        """(the newest picture, its serial) once it is newer than ``serial``, or (None, serial) after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self.serial != serial, timeout=timeout)
            return (self._image, self.serial) if self.serial != serial else (None, serial)


class PanelTap:
    """The loop's side of the panel: a sink (the output that leaves) and an observer
    (the driver frame with its landmarks). Both keep at most ``fps`` pictures a second,
    shrunk to ``size``; everything else (drawing, JPEG) happens on the server's thread."""

    name = "panel"

    def __init__(self, *, size: tuple[int, int], fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.period, self.clock = size, 1.0 / fps, clock
        self.output, self.driver = Picture(), Picture()
        self._next_out = self._next_drv = 0.0
        self.driver_points: np.ndarray | None = None
        self.sent = {"output": 0, "driver": 0}  # JPEG frames the page was sent, per stream (server thread)

    @per_frame
    def send(self, image: np.ndarray, t_frame: float) -> None:
        now = self.clock()
        if not self._due("_next_out", now):
            return
        self.output.put(cv2.resize(image, self.size, interpolation=cv2.INTER_AREA))

    @per_frame
    def observe(self, frame, result) -> None:
        if not self._due("_next_drv", self.clock()):
            return
        h, w = frame.image.shape[:2]
        scale = min(self.size[0] / w, self.size[1] / h)
        small = cv2.resize(frame.image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        points = None if result.driver_px is None else np.asarray(result.driver_px)[:, :2] * scale
        self.driver.put((small, points))

    def _due(self, slot: str, now: float) -> bool:
        """Whether a picture is due at ``now``. Due times step by the period from the last
        one, with a quarter period of slack: frames that come every 33 ms, give or take a
        millisecond, then give exactly 15 pictures a second, not 11 (every third frame
        whenever one arrives a hair early)."""
        due = getattr(self, slot)
        if now < due - self.period / 4:
            return False
        setattr(self, slot, max(due + self.period, now - self.period / 4))
        return True

    def close(self) -> None:
        pass


def draw_driver(item) -> np.ndarray:
    """The driver picture with its landmarks drawn (server thread)."""
    image, points = item
    image = image.copy()
    if points is not None:
        xy = points.astype(np.int32)
        image[np.clip(xy[:, 1], 0, image.shape[0] - 1), np.clip(xy[:, 0], 0, image.shape[1] - 1)] = (80, 255, 80)
    return image


class SettingsFile:
    """What the panel changed, kept across restarts: ``[section] key = value`` for the
    keys in ``PANEL_KEYS``, written atomically on each change. ``kept`` are the values
    that came from the file when the session started (the page marks them)."""

    def __init__(self, path: str | Path, kept: dict[str, Any]) -> None:
        self.path, self.kept = Path(path), dict(kept)
        self.values = dict(kept)
        self._lock = threading.Lock()

    def set(self, key: str, value: Any) -> None:
        if key not in PANEL_KEYS:
            return
        import tomli_w

        with self._lock:
            self.values[key] = value
            tables: dict[str, dict] = {}
            for name, v in sorted(self.values.items()):
                section, k = name.split(".", 1)
                tables.setdefault(section, {})[k] = v
            atomic_write_text(self.path, "# Kept by the reenact control panel; overrides config.toml. Delete a line to go back.\n"
                              + tomli_w.dumps(tables))


def check_host(cfg: PanelConfig) -> str | None:
    """The access token the panel requires, or None on a loopback address (where only
    this machine can reach it)."""
    return None if cfg.host.strip() in LOOPBACK else secrets.token_urlsafe(18)


def bind(cfg: PanelConfig) -> socket.socket:
    """The panel's listening socket, bound now: a port in use fails here, named."""
    host = cfg.host.strip()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, cfg.port))
    except OSError as e:
        sock.close()
        raise PanelError(f"panel: cannot listen on {host}:{cfg.port}: {e.strerror}",
                         fix="another program uses that port: pick another with --set panel.port=N") from None
    sock.listen(16)
    sock.set_inheritable(True)
    return sock


def model_dirs(root: str | Path) -> list[str]:
    """The model directories the panel offers: those directly under ``root`` with a model.json."""
    p = Path(root)
    if not p.is_dir():
        return []
    return sorted(d.name for d in p.iterdir() if d.is_dir() and (d / "model.json").is_file())


def create_app(session: Callable[[], Controls | None], tap: PanelTap, cfg: PanelConfig, *, token: str | None,
               settings: SettingsFile, info: dict[str, Any], log: Callable[[str], None] = print):
    """The FastAPI app. ``session()`` gives the session's controls, or None while live is
    still starting (then the state and the controls answer 503, and the streams wait).
    ``info`` is what the page shows about the session (model, engine, cameras, microphones)."""
    app = FastAPI(title="reenact panel", docs_url=None, redoc_url=None, openapi_url=None)

    def controls() -> Controls:
        c = session()
        if c is None:
            raise HTTPException(503, "live is starting: the model is loading")
        return c

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token is not None:
            given = request.query_params.get("token") or request.headers.get("x-reenact-token")
            if not given or not secrets.compare_digest(given, token):
                return JSONResponse({"error": "this panel needs its token: open the address printed at start"}, status_code=401)
        return await call_next(request)

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    def asset(name: str):
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:  # a fixed list: no path from a request reaches the file system
            raise HTTPException(404)
        return FileResponse(files[name])

    _add_streams(app, tap)

    @app.get("/api/state")
    def state():
        return {**controls().state(), "kept": sorted(settings.kept), "settings_file": str(settings.path),
                "preview": {"width": tap.size[0], "height": tap.size[1], "fps": round(1 / tap.period, 2)}, **info}

    @app.post("/api/control")
    async def control(request: Request):
        try:
            cmd = await request.json()
        except ValueError:
            raise HTTPException(400, "the body must be JSON: {\"action\": ..., \"value\": ..., \"name\": ...}") from None
        if not isinstance(cmd, dict) or not isinstance(cmd.get("action"), str):
            raise HTTPException(400, "the body must be a JSON object with a string \"action\"")
        try:  # the controls take their own locks; this thread is the server's, not the loop's
            await asyncio.to_thread(_apply, controls(), cmd["action"], cmd.get("name"), cmd.get("value"), settings)
        except (ValueError, TypeError) as e:
            raise HTTPException(400, str(e)) from None
        except ReenactError as e:  # a device that will not open (no virtual camera here): its one line and fix
            raise HTTPException(409, e.line()) from None
        return state()

    return app


def _add_streams(app: FastAPI, tap: PanelTap) -> None:
    """The two MJPEG streams: each sends the newest picture once it changes, encoded
    here, on the server's side, never on the loop's."""

    def mjpeg(stream: str, picture: Picture, draw: Callable[[Any], np.ndarray]):
        async def frames():
            serial = -1
            while True:
                item, serial = await asyncio.to_thread(picture.wait_newer, serial, 1.0)
                if item is None:
                    continue
                ok, jpg = cv2.imencode(".jpg", draw(item), [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    tap.sent[stream] += 1
                    yield b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpg.tobytes() + b"\r\n"

        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    @app.get("/stream/output.mjpg")
    def output_stream():
        return mjpeg("output", tap.output, lambda image: image)

    @app.get("/stream/driver.mjpg")
    def driver_stream():
        return mjpeg("driver", tap.driver, draw_driver)


# The page's commands, each a call on the same ``Controls`` the keys use: (controls, name, value) -> None.
_ACTIONS: dict[str, Callable[[Controls, Any, Any], None]] = {
    "region": lambda c, name, value: c.set_region(str(name), float(value)),
    "gain": lambda c, name, value: c.set_gain(float(value)),
    "steady": lambda c, name, value: c.set_steady(float(value)),
    "view": lambda c, name, value: c.set_view(Mode(value)),
    "recalibrate": lambda c, name, value: c.recalibrate(),
    "pause": lambda c, name, value: c.set_paused(bool(value)),
    "audio_offset": lambda c, name, value: c.set_audio_offset(float(value)),
    "badge_position": lambda c, name, value: c.set_badge_position(str(value)),
    "output": lambda c, name, value: c.set_output(str(name), bool(value)),
    "camera": lambda c, name, value: c.set_camera(str(value)),
}


def _apply(controls: Controls, action: str, name: str | None, value: Any, settings: SettingsFile) -> None:
    """One command from the page, through the same ``Controls`` the keys use."""
    if action in _ACTIONS:
        _ACTIONS[action](controls, name, value)
    elif action == "microphone":  # taken at the next start: kept in the settings file
        settings.set("audio.input", str(value))
        controls.log(f"microphone: {value} (from the next start)")
    elif action == "model":
        raise ValueError("the model is chosen with --model when live starts")
    else:
        raise ValueError(f"unknown action {action!r}")


class Panel:
    """Everything ``live --panel`` adds to a session, in the order a session needs it:
    made (its port bound) before any device opens; ``serve()`` before the model loads,
    so the server's start-up (imports, its event loop) is over before the first frame
    is captured and the page can be opened while live starts; its ``tap`` handed to
    the session as a sink and an observer; ``attach(controls)`` once the controls
    exist; ``close()`` at the end."""

    def __init__(self, cfg: PanelConfig, settings_file: tuple[Path, dict], *, output_size: tuple[int, int], fps: float,
                 info: dict[str, Any], open_virtual_camera: Callable[[float], Any], log: Callable[[str], None] = print) -> None:
        self.cfg, self.output_size, self.fps, self.info, self.log = cfg, output_size, fps, info, log
        self.open_virtual_camera = open_virtual_camera  # fps -> the [output] virtual camera (its device and backend)
        self.token = check_host(cfg)
        self.sock = bind(cfg)
        self.tap = PanelTap(size=(cfg.preview_width, cfg.preview_height), fps=cfg.preview_fps)
        self.settings = SettingsFile(*settings_file)
        self.controls: Controls | None = None
        self.server: PanelServer | None = None

    @property
    def base_url(self) -> str:
        """The address this machine reaches the panel on (an any-address bind is 127.0.0.1)."""
        host = self.cfg.host.strip()
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.cfg.port}/"

    @property
    def url(self) -> str:
        return self.base_url + (f"?token={self.token}" if self.token else "")

    def serve(self, *, ready_within: float = 10.0) -> None:
        """Start the server and return once it accepts requests."""
        info = {**self.info, "models": model_dirs(self.cfg.models_dir)}
        app = create_app(lambda: self.controls, self.tap, self.cfg, token=self.token, settings=self.settings, info=info,
                         log=self.log)
        self.server = PanelServer(app, self.sock, log=self.log)
        self.server.start(ready_within=ready_within)
        self._warm_up()
        self.log(f"panel: {self.url}" + ("  (the token in this address is required: the panel is reachable from other machines)"
                                           if self.token else ""))

    def _warm_up(self) -> None:
        """Ask for the page and its assets once, here, before any frame is captured: the
        first request's one-off work (routing, MIME tables, the worker threads) then never
        lands on a running loop when a user opens the page."""
        import urllib.request

        headers = {"X-Reenact-Token": self.token} if self.token else {}
        for path in ("", "static/panel.js", "static/panel.css", "api/state"):
            try:
                with urllib.request.urlopen(urllib.request.Request(self.base_url + path, headers=headers), timeout=5) as r:
                    r.read()
            except (OSError, ValueError):  # 503 from api/state (live is starting), or an address this machine cannot call itself on
                pass

    def attach(self, controls: Controls) -> None:
        """The session's controls, once it has them: from now on the page drives them."""
        from live.controls import Switchable
        from live.sinks import RecorderSink, VirtualCameraSink

        controls.on_change = self.settings.set
        fan, size = controls.loop.sinks, self.output_size
        vcam = Switchable("virtual-camera", fan, lambda: self.open_virtual_camera(self.fps), log=controls.log)
        vcam.sink = next((s for s in fan.sinks if isinstance(s, VirtualCameraSink)), None)
        recordings = Path(self.cfg.recordings_dir)
        rec = Switchable("recording", fan, lambda: RecorderSink(recordings / time.strftime("reenact-%Y%m%d-%H%M%S.mp4"),
                                                                size=size, fps=self.fps), log=controls.log)
        rec.sink = next((s for s in fan.sinks if isinstance(s, RecorderSink)), None)
        controls.outputs.update({"virtual-camera": vcam, "recording": rec})
        self.controls = controls

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()


class PanelServer:
    """uvicorn serving ``app`` on ``sock`` from a daemon thread; ``close()`` stops it."""

    def __init__(self, app, sock: socket.socket, *, log: Callable[[str], None] = print) -> None:
        import uvicorn

        self.sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                                    timeout_graceful_shutdown=1))
        self.server.install_signal_handlers = lambda: None  # Ctrl-C belongs to the live loop
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="panel", daemon=True)
        self.log = log

    def start(self, *, ready_within: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + ready_within
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise PanelError("panel: the web server did not start", fix="run again with --set panel.port=N for another port")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


__all__ = ["Panel", "PanelTap", "PanelServer", "SettingsFile", "create_app", "bind", "check_host", "model_dirs", "PanelError"]
