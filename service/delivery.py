"""Live delivery of alerts: Server-Sent Events, signed webhooks and MQTT.

One `EventHub` subscribes to the store. Store callbacks run in the thread that made the
change (a camera worker, an API request), so the hub only numbers the event, keeps it in
a bounded history and hands it on without blocking:

* **SSE** (`GET /events`, added by `add_live_routes`): each connection replays the history
  after its `Last-Event-ID` header (or `?last_event_id=`), then waits for new events,
  sending a keep-alive comment every `keepalive_s`. Ids increase monotonically and start
  from the wall clock in milliseconds, so ids of a restarted service are larger than any
  id of the previous run. A client whose last id is older than the history (or from a
  previous run) first gets an `event: resync`: re-read `GET /alerts`, then keep streaming.
  Events are filtered per key exactly like the alert list: role permission (alerts,
  cameras, approvals) and the key's sites, cameras and clause prefixes. A revoked key's
  stream ends at the next keep-alive.
* **Webhooks** (`WebhookSender`): one background thread and queue per target URL (a dead
  endpoint delays only itself), POST of the JSON event with
  `X-Postwatch-Signature: sha256=<hex HMAC-SHA256 of the body with the target's secret>`,
  retried with exponential backoff (1 s doubling to 60 s, `Retry-After` honoured) on
  connection errors, 408, 425, 429 and 5xx; other 4xx are not retried.
* **MQTT** (`MqttPublisher`, paho-mqtt 2.x): alert events on
  `<prefix>/<site>/<camera>/<clause>` (QoS 1, queued by paho while the broker is away) and
  each camera's status, retained, on `<prefix>/<site>/<camera>/status` (republished on
  every (re)connect so the retained copy is current).

Payloads are the API's own shapes (`AlertOut`, `CameraOut`, `ApprovalOut`) inside
`{"id", "kind", "site", "sent_at", "alert"|"camera"|"approval"}`; media URLs are relative to
the API unless a `public_url` is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit

from fastapi import Depends, FastAPI, Header, Query
from fastapi.responses import StreamingResponse

from service.auth import Permission, Principal, require
from service.models import utcnow
from service.schemas import AlertOut, ApprovalOut, CameraOut
from service.store import (
    ALERT_ACKNOWLEDGED,
    ALERT_CLOSED,
    ALERT_FALSE_ALARM,
    ALERT_MEDIA,
    ALERT_OPENED,
    ALERT_UPDATED,
    APPROVAL_CANCELLED,
    APPROVAL_CREATED,
    CAMERA_STATUS,
    CameraStatus,
    StoreEvent,
)

if TYPE_CHECKING:
    from service.metrics import Metrics
    from service.store import AlertStore

log = logging.getLogger("postwatch.delivery")

ALERT_KINDS = (ALERT_OPENED, ALERT_UPDATED, ALERT_CLOSED, ALERT_MEDIA, ALERT_ACKNOWLEDGED, ALERT_FALSE_ALARM)
LIVE_KINDS = (*ALERT_KINDS, CAMERA_STATUS, APPROVAL_CREATED, APPROVAL_CANCELLED)
KIND_PERMISSION = {
    **{k: Permission.ALERTS_READ for k in ALERT_KINDS},
    CAMERA_STATUS: Permission.CAMERAS_READ,
    APPROVAL_CREATED: Permission.APPROVALS_READ,
    APPROVAL_CANCELLED: Permission.APPROVALS_READ,
}
SIGNATURE_HEADER = "X-Postwatch-Signature"
DEFAULT_HISTORY = 1000
DEFAULT_KEEPALIVE_S = 15.0
MQTT_PREFIX = "postwatch"


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubEvent:
    """A numbered store event, serialised once for every channel."""

    id: int
    kind: str
    site: str
    camera: str | None
    clause: str | None
    data: str  # the JSON payload

    @property
    def body(self) -> bytes:
        return self.data.encode("utf-8")

    def sse(self) -> str:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n"

    def visible_to(self, principal: Principal) -> bool:
        """Whether a key may see this event: its role's permission and its scope, as the API lists."""
        permission = KIND_PERMISSION.get(self.kind)
        if permission is None or not principal.can(permission):
            return False
        return principal.scope.allows(self.site, self.camera, self.clause)


def event_payload(event: StoreEvent, event_id: int, base_url: str = "") -> dict[str, Any]:
    """The JSON body of an event, in the API's shapes (so clients parse one schema)."""
    out: dict[str, Any] = {
        "id": event_id,
        "kind": event.kind,
        "site": event.site,
        "sent_at": utcnow().isoformat(),
    }
    if event.alert is not None:
        out["alert"] = AlertOut.of(event.alert, base_url).model_dump(mode="json")
    if event.camera is not None:
        out["camera"] = CameraOut.of(event.camera).model_dump(mode="json")
    if event.approval is not None:
        out["approval"] = ApprovalOut.of(event.approval).model_dump(mode="json")
    return out


Sink = Callable[[HubEvent], None]


@dataclass(eq=False)
class _Listener:
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event

    def poke(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.wake.set)
        except RuntimeError:  # the loop is closed: the connection is gone
            pass


class EventHub:
    """Store events, numbered and kept in a bounded history, fanned out to SSE and sinks."""

    def __init__(
        self,
        store: AlertStore,
        *,
        history: int = DEFAULT_HISTORY,
        kinds: Iterable[str] = LIVE_KINDS,
        base_url: str = "",
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.keepalive_s = float(keepalive_s)
        self.first_id = int(time.time() * 1000)  # later runs start above this run's ids
        self._seq = self.first_id
        self._history: deque[HubEvent] = deque(maxlen=max(1, int(history)))
        self._lock = threading.Lock()
        self._listeners: set[_Listener] = set()
        self._sinks: list[Sink] = []
        self.closed = False
        self._unsubscribe = store.subscribe(self._on_store_event, kinds)

    # -- in: store events (any thread) -------------------------------------------------------------

    def _on_store_event(self, event: StoreEvent) -> None:
        alert = event.alert
        camera_id: str | None = None
        if alert is not None:
            camera_id = alert.camera
        elif event.camera is not None:
            camera_id = event.camera.id
        elif event.approval is not None:
            camera_id = event.approval.camera
        with self._lock:
            self._seq += 1
            hub_event = HubEvent(
                id=self._seq,
                kind=event.kind,
                site=event.site,
                camera=camera_id,
                clause=alert.clause if alert is not None else None,
                data=json.dumps(event_payload(event, self._seq, self.base_url), ensure_ascii=False),
            )
            self._history.append(hub_event)
            listeners = list(self._listeners)
            sinks = list(self._sinks)
        for listener in listeners:
            listener.poke()
        for sink in sinks:
            try:
                sink(hub_event)
            except Exception:  # a broken sink must not break the writer
                log.exception("delivery sink %r failed on event %d", sink, hub_event.id)

    def add_sink(self, sink: Sink) -> None:
        """Also hand every event to `sink` (called in the writer's thread: it must only queue)."""
        with self._lock:
            self._sinks.append(sink)

    # -- out: history and SSE ----------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._seq

    def after(self, last_id: int) -> tuple[list[HubEvent], bool]:
        """Events with id > `last_id`, and whether some in between are no longer known (a gap)."""
        with self._lock:
            events = [e for e in self._history if e.id > last_id]
            oldest = self._history[0].id if self._history else self._seq + 1
            gap = last_id < self.first_id or last_id < oldest - 1
        return events, gap

    async def stream(
        self,
        principal: Principal,
        last_id: int | None = None,
        kinds: Sequence[str] | None = None,
        start_id: int | None = None,
    ) -> AsyncIterator[str]:
        """The SSE text of one connection: replay after `last_id`, then live events, keep-alives.

        Without `last_id` the stream starts after `start_id`: the route takes it before the
        response starts, so nothing stored after the client saw "200 OK" is missed (the
        generator itself only runs once the headers are out).
        """
        listener = _Listener(asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._listeners.add(listener)
            if last_id is not None:
                cursor = last_id
            else:
                cursor = self._seq if start_id is None else start_id
        wanted = set(kinds) if kinds else None
        try:
            yield f"retry: 3000\n: connected, last event id {self.last_id}\n\n"
            if last_id is not None:
                _, gap = self.after(last_id)
                if gap:
                    reason = "events after that id are no longer kept: re-read GET /alerts"
                    data = json.dumps({"last_event_id": last_id, "reason": reason})
                    yield f"event: resync\ndata: {data}\n\n"
            while not self.closed:
                events, _ = self.after(cursor)
                for event in events:
                    cursor = event.id
                    if (wanted is None or event.kind in wanted) and event.visible_to(principal):
                        yield event.sse()
                try:
                    await asyncio.wait_for(listener.wake.wait(), timeout=self.keepalive_s)
                except asyncio.TimeoutError:
                    key = await asyncio.to_thread(self.store.key, principal.key_id)
                    if key is None or key.revoked:
                        yield 'event: revoked\ndata: {"reason": "the API key was revoked"}\n\n'
                        return
                    yield ": keep-alive\n\n"
                listener.wake.clear()
        finally:
            with self._lock:
                self._listeners.discard(listener)

    def close(self) -> None:
        """Stop listening to the store and end every SSE stream (the server is shutting down)."""
        self.closed = True
        self._unsubscribe()
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.poke()


# Module level, not inside add_live_routes: FastAPI resolves these (string) annotations in
# the module's namespace.
_Reader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]


def _parse_last_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return 0  # not one of ours: everything we still have, after a resync


def add_live_routes(app: FastAPI, hub: EventHub) -> None:
    """Add `GET /events` (Server-Sent Events) to an app made by `service.api.create_app`."""

    @app.get(
        "/events",
        tags=["alerts"],
        summary="Live alert events (Server-Sent Events), resumable with Last-Event-ID",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`id`, `event` (the kind), `data` (JSON).",
            },
            401: {"description": "No API key, or an unknown or revoked one."},
        },
    )
    async def events(
        principal: _Reader,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        last_event_id_q: Annotated[
            str | None, Query(alias="last_event_id", description="For clients that cannot set the header.")
        ] = None,
        kind: Annotated[
            list[str] | None, Query(description="Only these event kinds, e.g. alert.opened.")
        ] = None,
    ) -> StreamingResponse:
        last = _parse_last_id(last_event_id if last_event_id is not None else last_event_id_q)
        return StreamingResponse(
            hub.stream(principal, last, kind, start_id=hub.last_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
        )


# -- webhooks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookTarget:
    """Where to POST events: the URL, the shared secret for the signature, optional kind/site filters."""

    url: str
    secret: str
    kinds: frozenset[str] | None = None
    sites: frozenset[str] | None = None

    def wants(self, event: HubEvent) -> bool:
        return (self.kinds is None or event.kind in self.kinds) and (
            self.sites is None or event.site in self.sites
        )


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers (and tests): whether `header` signs `body` with `secret` (constant time)."""
    return bool(header) and hmac.compare_digest(sign(secret, body), str(header))


RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class _Target:
    target: WebhookTarget
    queue: queue.Queue[HubEvent | None]
    thread: threading.Thread | None = None
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass
class WebhookSender:
    """Delivers hub events to webhook targets from background threads, with retries."""

    targets: Sequence[WebhookTarget]
    timeout_s: float = 5.0
    max_attempts: int = 6
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    queue_size: int = 1000
    metrics: Metrics | None = None
    _workers: list[_Target] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        for target in self.targets:
            if not target.url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL must be http(s): {target.url!r}")
            if not target.secret:
                raise ValueError(f"webhook {target.url!r} needs a secret to sign its payloads")
        import httpx

        from service.api import _version

        self._client = httpx.Client(timeout=self.timeout_s, headers={"User-Agent": f"postwatch/{_version()}"})
        for target in self.targets:
            worker = _Target(target, queue.Queue(self.queue_size))
            worker.thread = threading.Thread(target=self._run, args=(worker,), name="webhook", daemon=True)
            worker.thread.start()
            self._workers.append(worker)

    def __call__(self, event: HubEvent) -> None:
        """Queue an event for every target that wants it (never blocks; drops when a queue is full)."""
        for worker in self._workers:
            if not worker.target.wants(event):
                continue
            try:
                worker.queue.put_nowait(event)
            except queue.Full:
                worker.dropped += 1
                log.warning("webhook %s: queue full, event %d dropped", worker.target.url, event.id)

    def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "url": w.target.url,
                "delivered": w.delivered,
                "failed": w.failed,
                "dropped": w.dropped,
                "queued": w.queue.qsize(),
            }
            for w in self._workers
        ]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads: deliveries in progress stop retrying, queued ones are counted as dropped."""
        self._stop.set()
        for worker in self._workers:
            try:
                worker.queue.put_nowait(None)
            except queue.Full:
                pass
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(timeout)
        self._client.close()

    def _run(self, worker: _Target) -> None:
        while True:
            event = worker.queue.get()
            if event is None or self._stop.is_set():
                if event is not None:
                    worker.dropped += 1
                if event is None:
                    return
                continue
            ok = self._deliver(worker.target, event)
            if ok:
                worker.delivered += 1
            else:
                worker.failed += 1
            if self.metrics is not None:
                self.metrics.counter(
                    "postwatch_webhook_deliveries_total", "Webhook deliveries, by result.", ("site", "result")
                ).inc(site=event.site, result="ok" if ok else "failed")

    def _deliver(self, target: WebhookTarget, event: HubEvent) -> bool:
        body = event.body
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(target.secret, body),
            "X-Postwatch-Event": event.kind,
            "X-Postwatch-Delivery": str(event.id),
        }
        for attempt in range(1, self.max_attempts + 1):
            delay = min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s)
            try:
                response = self._client.post(target.url, content=body, headers=headers)
            except Exception as exc:  # connection refused, timeout, TLS: all worth a retry
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUS:
                    log.warning(
                        "webhook %s: event %d refused (%s), not retried", target.url, event.id, problem
                    )
                    return False
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = min(float(retry_after), self.max_delay_s)
            if attempt == self.max_attempts:
                log.error(
                    "webhook %s: event %d undelivered after %d attempts (%s)",
                    target.url,
                    event.id,
                    attempt,
                    problem,
                )
                return False
            log.warning(
                "webhook %s: event %d attempt %d failed (%s), retrying in %.1f s",
                target.url,
                event.id,
                attempt,
                problem,
                delay,
            )
            if self._stop.wait(delay):
                return False
        return False


# -- MQTT ----------------------------------------------------------------------------------------------

_TOPIC_BAD = re.compile(r"[/+#\x00]")


def topic_segment(value: str) -> str:
    """An id as one MQTT topic level (no '/', '+', '#' or NUL)."""
    return _TOPIC_BAD.sub("_", value) or "_"


@dataclass(frozen=True)
class MqttSettings:
    """Parsed from `mqtt://[user:password@]host[:port][/prefix]` (`mqtts://` for TLS)."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    prefix: str

    @classmethod
    def parse(cls, url: str, prefix: str | None = None) -> MqttSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"MQTT broker URL must look like mqtt://host[:port][/prefix], got {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        path_prefix = parts.path.strip("/")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            prefix=(prefix or path_prefix or MQTT_PREFIX).strip("/"),
        )


class MqttPublisher:
    """Publishes hub events to an MQTT broker; paho's network thread reconnects on its own."""

    def __init__(
        self,
        url: str,
        store: AlertStore,
        *,
        sites: Iterable[str] | None = None,
        prefix: str | None = None,
        qos: int = 1,
        client_id: str | None = None,
        keepalive_s: int = 30,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.settings = MqttSettings.parse(url, prefix)
        self.store = store
        self.sites = frozenset(sites) if sites is not None else None
        self.qos = qos
        self.connected = threading.Event()
        self._closing = False
        self.published = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"postwatch-{uuid.uuid4().hex[:10]}"
        )
        if self.settings.username:
            self.client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(self.settings.host, self.settings.port, keepalive_s)
        self.client.loop_start()

    def topic(self, site: str, camera: str | None, leaf: str) -> str:
        parts = [
            self.settings.prefix,
            topic_segment(site),
            topic_segment(camera or "_site"),
            topic_segment(leaf),
        ]
        return "/".join(p for p in parts if p)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning(
                "MQTT broker %s:%d refused the connection: %s",
                self.settings.host,
                self.settings.port,
                reason_code,
            )
            return
        self.connected.set()
        log.info("MQTT connected to %s:%d", self.settings.host, self.settings.port)
        threading.Thread(target=self._publish_all_status, name="mqtt-status", daemon=True).start()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self.connected.clear()
        if self._closing:
            return
        log.warning(
            "MQTT disconnected from %s:%d (%s); reconnecting",
            self.settings.host,
            self.settings.port,
            reason_code,
        )

    def _publish_all_status(self) -> None:
        """Retained status of every camera, so a broker (re)start has current values."""
        try:
            cameras = self.store.cameras()
        except Exception:
            log.exception("MQTT: reading camera status failed")
            return
        for camera in cameras:
            if self.sites is None or camera.site in self.sites:
                self.publish_status(camera)

    def publish_status(self, camera: CameraStatus) -> None:
        payload = json.dumps(CameraOut.of(camera).model_dump(mode="json"), ensure_ascii=False)
        self.client.publish(self.topic(camera.site, camera.id, "status"), payload, qos=self.qos, retain=True)

    def __call__(self, event: HubEvent) -> None:
        """Hub sink: alert events on their clause topic, camera status retained."""
        if self.sites is not None and event.site not in self.sites:
            return
        if event.kind == CAMERA_STATUS:
            camera = json.loads(event.data).get("camera") or {}
            self.client.publish(
                self.topic(event.site, event.camera, "status"),
                json.dumps(camera, ensure_ascii=False),
                qos=self.qos,
                retain=True,
            )
        elif event.kind in ALERT_KINDS and event.clause:
            self.client.publish(self.topic(event.site, event.camera, event.clause), event.data, qos=self.qos)
        else:
            return
        self.published += 1

    def close(self, timeout: float = 3.0) -> None:
        """Flush what is queued (up to `timeout`), then disconnect."""
        deadline = time.monotonic() + timeout
        while self.connected.is_set() and self._pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def _pending(self) -> int:
        try:
            return len(self.client._out_messages)  # paho keeps unacknowledged QoS>0 messages here
        except AttributeError:
            return 0


__all__ = [
    "ALERT_KINDS",
    "EventHub",
    "HubEvent",
    "LIVE_KINDS",
    "MqttPublisher",
    "MqttSettings",
    "SIGNATURE_HEADER",
    "WebhookSender",
    "WebhookTarget",
    "add_live_routes",
    "event_payload",
    "sign",
    "topic_segment",
    "verify_signature",
]
