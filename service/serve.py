"""`postwatch serve`: the API, live delivery and one worker per camera of a site, in one process.

`build_service(site_path, ...)` assembles everything and returns a `Service` that is not
running yet; `Service.start()` starts the camera workers, `Service.stop()` stops them
(open alerts are closed at their camera's last frame) and flushes clips and deliveries.
`run(...)` does that around uvicorn; `BackgroundServer` runs uvicorn in a thread for tests
and embedding. `create_key_command` is `postwatch keys create`.

Storage: SQLite by default, a file beside the site file (`<site>.db`, in WAL mode), or any
database URL (`--db`, else `$POSTWATCH_DB`). Media (snapshots, clips) go to
`<site>-media/` beside the site file unless `out_dir` says otherwise.

Files as cameras: with `realtime=True` (the default) a video file is read at its own
pace, like a camera, and analysis drops frames when it is slower than that; `loop_files`
replays it forever. `realtime=False` reads files as fast as inference allows without
dropping any frame (tests and replays): stream time still comes from the file, so the
rules behave the same, only sooner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibration.site import Site, load_site
from service.api import create_app
from service.clips import DEFAULT_AFTER_S, DEFAULT_BEFORE_S, ClipRecorder, purge_clips, remove_partial_files
from service.db import DB_ENV, database_url
from service.delivery import EventHub, MqttPublisher, WebhookSender, WebhookTarget, add_live_routes
from service.metrics import Metrics
from service.review_routes import add_review_routes
from service.store import AlertStore
from service.workers import (
    AnalyserFactory,
    ModelAnalysers,
    Opener,
    WorkerOptions,
    WorkerPool,
    add_control_routes,
    default_opener,
)

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger("postwatch.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def default_db(site_path: str | os.PathLike[str]) -> str:
    """`$POSTWATCH_DB`, else a SQLite file beside the site file (`shop.yaml` -> `shop.db`)."""
    env = os.environ.get(DB_ENV)
    if env:
        return env
    path = Path(site_path).resolve()
    return str(path.with_suffix(".db"))


def default_media_root(site_path: str | os.PathLike[str]) -> Path:
    path = Path(site_path).resolve()
    return path.with_name(f"{path.stem}-media")


@dataclass
class Service:
    """Everything `serve` runs for one site; `start()` / `stop()` (or a `with` block)."""

    site: Site
    store: AlertStore
    app: FastAPI
    hub: EventHub
    pool: WorkerPool
    clips: ClipRecorder
    metrics: Metrics
    media_root: Path
    db_url: str
    webhooks: WebhookSender | None = None
    mqtt: MqttPublisher | None = None
    retention_days: float | None = None
    running: bool = False
    _stop_housekeeping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Service:
        if self.running:
            return self
        self.pool.start()
        self.running = True
        if self.retention_days is not None:
            threading.Thread(target=self._housekeeping, name="clip-retention", daemon=True).start()
        log.info(
            "serving site %s: %d camera(s), database %s, media in %s",
            self.site.name,
            len(self.pool.workers),
            self.db_url,
            self.media_root,
        )
        return self

    def stop(self) -> None:
        """Stop cameras (closing open alerts), write pending clips, flush deliveries."""
        if self.running:
            self._stop_housekeeping.set()
            self.pool.stop()
            self.running = False
        self.clips.close()
        if self.mqtt is not None:
            self.mqtt.close()
        if self.webhooks is not None:
            self.webhooks.close()
        self.hub.close()
        self.store.close()

    def _housekeeping(self) -> None:
        """Once at start and then daily: delete clips older than the retention."""
        while True:
            try:
                purge_clips(self.store, self.media_root, float(self.retention_days or 0))
            except Exception:
                log.exception("clip retention failed")
            if self._stop_housekeeping.wait(24 * 3600):
                return

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_service(
    site_path: str | os.PathLike[str],
    db: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    loop_files: bool = False,
    *,
    video_weights: str | None = None,
    realtime: bool = True,
    clip_before_s: float = DEFAULT_BEFORE_S,
    clip_after_s: float = DEFAULT_AFTER_S,
    blur_faces: bool = True,
    font_path: str | None = None,
    webhooks: Sequence[WebhookTarget] = (),
    mqtt_url: str | None = None,
    mqtt_prefix: str | None = None,
    public_url: str = "",
    retention_days: float | None = None,
    cameras: Sequence[str] | None = None,
    worker_options: WorkerOptions | None = None,
    analysers: AnalyserFactory | None = None,
    opener: Opener | None = None,
    metrics: Metrics | None = None,
    keepalive_s: float = 15.0,
) -> Service:
    """Assemble the service of a site file (not started).

    `db`: database URL or SQLite path (default: `default_db`). `out_dir`: media root.
    `weights`: detector weights (loaded now, so a missing file fails here); `video_weights`:
    video frames' own ("auto", "same", a path: `vision.detect.video_weights_for`). `loop_files`:
    replay video files forever. `realtime`: pace files like cameras (see the module doc).
    `clip_before_s`/`clip_after_s`: clip window around an alert's opening. `blur_faces`:
    blur the faces of everyone but the person concerned in clips and snapshots.
    `webhooks`, `mqtt_url` (`mqtt://host:1883[/prefix]`): outgoing delivery; both only
    carry this site's events. `public_url`: makes media URLs in payloads absolute.
    `retention_days`: delete clips older than this (daily). `cameras`: run only these.
    `analysers`/`opener`: replace the models or the sources (tests, replays).
    """
    site_path = Path(site_path)
    site = load_site(site_path)
    db_url = db or default_db(site_path)
    media_root = Path(out_dir) if out_dir is not None else default_media_root(site_path)
    media_root.mkdir(parents=True, exist_ok=True)
    unknown = [c for c in cameras or () if c not in [cam.id for cam in site.cameras]]
    if unknown:
        raise KeyError(f"site {site.name!r} has no camera {unknown[0]!r}")
    store = AlertStore(db_url)  # a malformed URL fails here
    try:
        store.upgrade()  # an unreachable database fails here, before the models load
        if analysers is None:
            # before anything starts: missing weights fail here
            analysers = ModelAnalysers(weights, video_weights=video_weights)
    except BaseException:
        store.close()
        raise
    metrics = metrics or Metrics()
    try:
        app = create_app(store, site, metrics=metrics, media_root=media_root, migrate=False)  # done above
        remove_partial_files(media_root)  # what a killed predecessor was writing; never registered
        hub = EventHub(store, base_url=public_url, keepalive_s=keepalive_s)
        add_live_routes(app, hub)
        clips = ClipRecorder(
            store,
            media_root,
            before_s=clip_before_s,
            after_s=clip_after_s,
            blur_faces=blur_faces,
            font_path=font_path,
        )
        base = worker_options or WorkerOptions()
        options = replace(base, loop_files=loop_files or base.loop_files, realtime=realtime and base.realtime)
        pool = WorkerPool(
            site,
            store,
            analysers,
            options=options,
            metrics=metrics,
            clips=clips,
            opener=opener or default_opener(media_root, options.decode_threads),
            cameras=cameras,
        )
        add_control_routes(app, pool)
        add_review_routes(app)  # the trainers' and managers' page at /review
        sender = None
        if webhooks:
            sender = WebhookSender(
                [t if t.sites is not None else _for_site(t, site.name) for t in webhooks], metrics=metrics
            )
            hub.add_sink(sender)
        mqtt = None
        if mqtt_url:
            mqtt = MqttPublisher(mqtt_url, store, sites=[site.name], prefix=mqtt_prefix)
            hub.add_sink(mqtt)
    except BaseException:
        store.close()
        raise
    shown = database_url(db_url).render_as_string(hide_password=True)
    return Service(
        site=site,
        store=store,
        app=app,
        hub=hub,
        pool=pool,
        clips=clips,
        metrics=metrics,
        media_root=media_root,
        db_url=shown,
        webhooks=sender,
        mqtt=mqtt,
        retention_days=retention_days,
    )


def _for_site(target: WebhookTarget, site: str) -> WebhookTarget:
    return WebhookTarget(target.url, target.secret, target.kinds, frozenset({site}))


def _server(config: uvicorn.Config, hub: EventHub) -> uvicorn.Server:
    """uvicorn's Server, made to end SSE streams when it is asked to exit.

    Why: uvicorn waits for open connections before it shuts down, and an SSE stream never
    ends by itself; closing the hub ends every stream, so Ctrl-C stops the server promptly.
    """
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            hub.close()
            super().handle_exit(sig, frame)

    return Server(config)


def run(
    site_path: str | os.PathLike[str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db: str | None = None,
    *,
    loop_files: bool = False,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Serve a site until interrupted: the API on host:port, a worker per camera.

    Extra keyword options go to `build_service` (weights, out_dir, webhooks, mqtt_url, ...).
    """
    import uvicorn

    logging.getLogger("postwatch").setLevel(log_level.upper())
    service = build_service(site_path, db, loop_files=loop_files, **options)
    if not service.store.keys():
        log.warning(
            "no API key in %s yet: create one with `postwatch keys create --role admin --site %s --db ...`",
            service.db_url,
            service.site.name,
        )
    config = uvicorn.Config(
        service.app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5, lifespan="off"
    )
    server = _server(config, service.hub)
    service.start()
    try:
        server.run()
    finally:
        service.stop()


class BackgroundServer:
    """uvicorn serving an app in a daemon thread on a free port (tests, embedding).

    `with BackgroundServer(app, hub) as server: httpx.get(server.url + "/healthz")`
    """

    def __init__(self, app: FastAPI, hub: EventHub | None = None, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.host = host
        self.port = port or _free_port(host)
        self.hub = hub
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.hub is not None:
            self.hub.close()
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def create_key_command(
    db: str | None,
    role: str,
    sites: Sequence[str] | str,
    cameras: Sequence[str] | None = None,
    name: str = "",
) -> str:
    """`postwatch keys create`: migrate the database, store a new key, return it in clear.

    `db` None means `$POSTWATCH_DB`, else `postwatch.db` in the working directory (note:
    `serve` defaults to a file beside the site file, so pass the same `--db` to both).
    `sites`: site ids, or "*" for every site; `cameras`: optionally narrow to these.
    """
    from service.keys import create_key

    store = AlertStore(db)
    try:
        store.upgrade()
        return create_key(store, role, sites, list(cameras) if cameras else None, name=name)
    finally:
        store.close()


__all__ = [
    "BackgroundServer",
    "Service",
    "build_service",
    "create_key_command",
    "default_db",
    "default_media_root",
    "run",
]


def site_options(site_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `build_service` options a site file sets: privacy, clip window and retention, delivery.

    Webhook secrets come from the environment variable the site names, so the site file can be
    shared without them; a missing variable is a configuration error, not a silent unsigned hook.
    """
    from calibration.site import SiteError, load_site

    site = load_site(site_path)
    hooks = []
    for hook in site.delivery.webhooks:
        secret = os.environ.get(hook.secret_env)
        if not secret:
            raise SiteError(
                f"{site_path}: delivery.webhooks: environment variable {hook.secret_env} is not set"
            )
        hooks.append(WebhookTarget(hook.url, secret, frozenset(hook.kinds) if hook.kinds else None))
    options: dict[str, Any] = {
        "blur_faces": site.privacy.blur_faces,
        "clip_before_s": site.clips.before_s,
        "clip_after_s": site.clips.after_s,
        "retention_days": site.clips.retention_days,
        "font_path": site.clips.font,
        "webhooks": hooks,
        "public_url": site.delivery.public_url,
    }
    if site.delivery.mqtt is not None:
        options["mqtt_url"] = site.delivery.mqtt.url
        options["mqtt_prefix"] = site.delivery.mqtt.prefix
    return options
