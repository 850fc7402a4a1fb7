"""Live delivery against real servers: SSE through uvicorn, webhooks to a local HTTP receiver,
MQTT through the Mosquitto broker at 127.0.0.1:1883.

Alerts are written through the store as camera workers write them; every store-facing
test runs on SQLite and on the PostgreSQL server (`db_url`). The helpers here (SSE reader,
webhook receiver, MQTT collector) are reused by the end-to-end tests in test_serve.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from calibration.site import Site
from rules.violation import Violation
from service.api import create_app
from service.delivery import (
    EventHub,
    MqttPublisher,
    MqttSettings,
    WebhookSender,
    WebhookTarget,
    add_live_routes,
    topic_segment,
)
from service.keys import create_key, revoke_key
from service.serve import BackgroundServer
from service.store import AlertStore

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100]]
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


# -- helpers (also used by test_serve) -----------------------------------------------------------


class SSEReader:
    """Reads an SSE stream in a thread and keeps its events ({"id", "event", "data"}) and comments."""

    def __init__(self, url: str, key: str, last_id: str | int | None = None, **params: Any) -> None:
        self.url, self.key, self.last_id, self.params = url, key, last_id, params
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the SSE stream did not open"

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        try:
            with httpx.stream(
                "GET", self.url, headers=headers, params=self.params, timeout=httpx.Timeout(10.0, read=30.0)
            ) as response:
                self.status = response.status_code
                self._opened.set()
                event: dict[str, Any] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif not line:
                        if "event" in event or "data" in event:
                            if "data" in event and event.get("event") not in (None, "resync", "revoked"):
                                event["data"] = json.loads(event["data"])
                            with self._lock:
                                self.events.append(event)
                                self._lock.notify_all()
                        event = {}
                    else:
                        name, _, value = line.partition(":")
                        event[name] = value[1:] if value.startswith(" ") else value
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()
            self.ended.set()
            with self._lock:
                self._lock.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = next((e for e in self.events if predicate(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    raise AssertionError(
                        f"no matching SSE event; got {[e.get('event') for e in self.events]}"
                    )
                self._lock.wait(min(left, 0.2))

    def kinds(self) -> list[str]:
        return [e.get("event", "") for e in self.events]

    def close(self) -> None:
        self._stop.set()


class WebhookReceiver:
    """A local HTTP server that records POSTs and checks their HMAC signature itself.

    `statuses` are answered in order (then 200): e.g. [503] fails the first attempt.
    """

    def __init__(self, secret: str, statuses: list[int] | None = None) -> None:
        self.secret = secret.encode()
        self.statuses = list(statuses or [])
        self.received: list[dict[str, Any]] = []  # every attempt
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                with receiver.cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append(
                        {
                            "body": json.loads(body),
                            "valid": hmac.compare_digest(
                                expected, self.headers.get("X-Postwatch-Signature", "")
                            ),
                            "event": self.headers.get("X-Postwatch-Event"),
                            "status": status,
                        }
                    )
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = next((r for r in self.received if predicate(r)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching webhook; got {[r['event'] for r in self.received]}")
                self.cond.wait(min(left, 0.2))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MqttCollector:
    """A paho subscriber on `<topic>` at the test broker, recording (topic, payload, retain)."""

    def __init__(self, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"pwtest-{uuid.uuid4().hex[:8]}"
        )
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        try:
            self.client.connect(MQTT_HOST, MQTT_PORT, 30)
        except OSError as exc:
            pytest.skip(f"MQTT broker at {MQTT_HOST}:{MQTT_PORT} is unreachable: {exc}")
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "MQTT subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.cond:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self.cond.notify_all()

    def wait_for(
        self, predicate: Callable[[str, bytes, bool], bool], timeout: float = 10.0
    ) -> tuple[str, Any, bool]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = next((m for m in self.messages if predicate(*m)), None)
                if found is not None:
                    return found[0], json.loads(found[1]), found[2]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching MQTT message; got {[m[0] for m in self.messages]}")
                self.cond.wait(min(left, 0.2))

    def close(self) -> None:
        self.client.disconnect()  # first: the network loop then ends at once, not at its 1 s poll
        self.client.loop_stop()


def clear_retained(prefix: str) -> None:
    """Remove the retained messages a test left under `prefix` (the broker is shared)."""
    import paho.mqtt.client as mqtt

    seen: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: seen.append(m.topic) if m.retain else None
    client.connect(MQTT_HOST, MQTT_PORT, 30)
    client.subscribe(f"{prefix}/#")
    client.loop_start()
    time.sleep(0.3)
    for topic in seen:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
    client.disconnect()
    client.loop_stop()


def mqtt_available() -> bool:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=1):
            return True
    except OSError:
        return False


# -- fixtures ----------------------------------------------------------------------------------


def site(name: str) -> Site:
    return Site.model_validate(
        {
            "name": name,
            "cameras": [
                {"id": "desk", "source": "desk.mp4", "zones": [{"name": "post", "kind": "post",
                                                                "role": "front_desk", "polygon": SQUARE}]},
                {"id": "gate", "source": "gate.mp4", "zones": [{"name": "gate", "kind": "post",
                                                                "role": "guard_fixed", "polygon": SQUARE}]},
            ],
        }
    )  # fmt: skip


def violation(clause: str, camera: str, start_s: float = 10.0, track: int | None = 1) -> Violation:
    return Violation(clause, camera, track, start_s, confidence=0.8, message=f"{clause} seen")


@pytest.fixture
def live(db_url: str) -> Iterator[dict[str, Any]]:
    """Two shops served by uvicorn with /events, and a key per (site, role)."""
    store = AlertStore(db_url)
    app = create_app(store, [site("shop-a"), site("shop-b")])
    hub = EventHub(store, keepalive_s=0.3, history=50)
    add_live_routes(app, hub)
    keys = {
        "a": create_key(store, "manager", ["shop-a"]),
        "b": create_key(store, "manager", ["shop-b"]),
        "a-security": create_key(store, "security", ["shop-a"]),
        "a-trainer": create_key(store, "trainer", ["shop-a"]),
    }
    with BackgroundServer(app, hub) as server:
        yield {"store": store, "hub": hub, "url": server.url + "/events", "keys": keys}
    store.close()


# -- SSE -----------------------------------------------------------------------------------------


def test_sse_delivers_opened_updated_closed_in_order_to_keys_of_that_site_only(live: dict[str, Any]) -> None:
    store, url, keys = live["store"], live["url"], live["keys"]
    a, b, guard = SSEReader(url, keys["a"]), SSEReader(url, keys["b"]), SSEReader(url, keys["a-security"])
    v = violation("d5.stance.01", "desk")
    alert = store.open_alert(v, "desk", "shop-a", t=12.0, at=T0)
    store.update_alert(alert.id, v, t=40.0)
    store.close_alert(alert.id, t=45.0)
    gate = store.open_alert(violation("d11.phone.01", "gate"), "gate", "shop-a", t=12.0, at=T0)
    store.open_alert(violation("d5.stance.01", "desk"), "desk", "shop-b", t=12.0, at=T0)

    a.wait_for(lambda e: e["event"] == "alert.opened" and e["data"]["alert"]["id"] == gate.id)
    mine = [e for e in a.events if e["event"].startswith("alert.")]
    assert [e["event"] for e in mine] == ["alert.opened", "alert.updated", "alert.closed", "alert.opened"]
    assert [e["data"]["alert"]["id"] for e in mine] == [alert.id, alert.id, alert.id, gate.id]
    ids = [int(e["id"]) for e in mine]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert mine[0]["data"]["alert"]["clause"] == "d5.stance.01" and mine[0]["data"]["site"] == "shop-a"

    other = b.wait_for(lambda e: e["event"] == "alert.opened")
    assert other["data"]["site"] == "shop-b"
    assert all(e["data"]["site"] == "shop-b" for e in b.events)  # nothing of shop-a
    # Security keys see the guard code (d11) only, as in the alert list.
    guard.wait_for(lambda e: e["event"] == "alert.opened")
    assert [e["data"]["alert"]["id"] for e in guard.events] == [gate.id]
    time.sleep(0.5)
    assert any(c == "keep-alive" for c in a.comments)
    for reader in (a, b, guard):
        reader.close()


def test_sse_resumes_after_last_event_id_with_only_later_events(live: dict[str, Any]) -> None:
    store, url, keys = live["store"], live["url"], live["keys"]
    first = SSEReader(url, keys["a"])
    v = violation("d5.stance.01", "desk")
    alert = store.open_alert(v, "desk", "shop-a", t=12.0, at=T0)
    opened = first.wait_for(lambda e: e["event"] == "alert.opened")
    first.close()  # the client goes away...
    store.update_alert(alert.id, v, t=20.0)  # ...and misses these
    store.close_alert(alert.id, t=25.0)
    store.open_alert(violation("d5.stance.01", "desk"), "desk", "shop-b", t=12.0, at=T0)

    resumed = SSEReader(url, keys["a"], last_id=opened["id"])
    resumed.wait_for(lambda e: e["event"] == "alert.closed")
    assert [e["event"] for e in resumed.events] == ["alert.updated", "alert.closed"]
    assert all(int(e["id"]) > int(opened["id"]) for e in resumed.events)
    # The same through the query parameter, for clients that cannot set headers.
    by_query = SSEReader(url, keys["a"], last_event_id=opened["id"])
    by_query.wait_for(lambda e: e["event"] == "alert.closed")
    assert [e["event"] for e in by_query.events] == ["alert.updated", "alert.closed"]
    # An id the hub no longer knows (another run, or trimmed history): resync first.
    stale = SSEReader(url, keys["a"], last_id=1)
    stale.wait_for(lambda e: e["event"] == "resync")
    assert stale.events[0]["event"] == "resync"
    # A key of another site gets none of it, even when resuming.
    other = SSEReader(url, keys["b"], last_id=opened["id"])
    other.wait_for(lambda e: e["event"] == "alert.opened")
    assert [e["data"]["site"] for e in other.events] == ["shop-b"]
    for reader in (resumed, by_query, stale, other):
        reader.close()


def test_sse_needs_a_key_and_ends_when_it_is_revoked(live: dict[str, Any]) -> None:
    store, url, keys = live["store"], live["url"], live["keys"]
    assert httpx.get(url, timeout=5).status_code == 401
    reader = SSEReader(url, keys["a-trainer"])
    assert reader.status == 200
    revoke_key(store, keys["a-trainer"])
    reader.wait_for(lambda e: e["event"] == "revoked", timeout=5)
    assert reader.ended.wait(5)


# -- webhooks --------------------------------------------------------------------------------------


def test_webhooks_are_signed_and_retried_with_backoff(db_url: str) -> None:
    store = AlertStore(db_url)
    store.upgrade()
    hub = EventHub(store)
    flaky = WebhookReceiver("s3cret", statuses=[503, 500])  # two failures, then OK
    refusing = WebhookReceiver("other", statuses=[400])
    sender = WebhookSender(
        [
            WebhookTarget(flaky.url, "s3cret"),
            WebhookTarget(refusing.url, "other", kinds=frozenset({"alert.opened"})),
        ],
        first_delay_s=0.05,
    )
    hub.add_sink(sender)
    try:
        started = time.monotonic()
        alert = store.open_alert(violation("d5.stance.01", "desk"), "desk", "shop-a", t=12.0, at=T0)
        store.close_alert(alert.id, t=20.0)
        delivered = flaky.wait_for(lambda r: r["event"] == "alert.closed" and r["status"] == 200)
        assert time.monotonic() - started >= 0.05 + 0.1  # waited 0.05 s, then 0.1 s
        opened = [r for r in flaky.received if r["event"] == "alert.opened"]
        assert [r["status"] for r in opened] == [503, 500, 200]  # retried until accepted
        assert all(r["valid"] for r in flaky.received)  # HMAC-SHA256 of the exact body
        assert opened[-1]["body"]["alert"]["id"] == alert.id and delivered["body"]["kind"] == "alert.closed"
        assert delivered["body"]["alert"]["end_s"] == 20.0
        refusing.wait_for(lambda r: r["event"] == "alert.opened")
        time.sleep(0.3)
        assert len(refusing.received) == 1  # a 400 is not retried; closed events are not wanted there

        # The sender counts a delivery once the receiver's answer is back, which on a busy machine
        # can come after the receiver has noted it: wait for the count (up to 5 s), then check it.
        def counted() -> dict[str, dict[str, Any]]:
            return {s["url"]: s for s in sender.stats()}

        deadline = time.monotonic() + 5.0
        while counted()[flaky.url]["delivered"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = counted()
        assert stats[flaky.url]["delivered"] == 2 and stats[refusing.url]["failed"] == 1
    finally:
        sender.close()
        hub.close()
        flaky.close()
        refusing.close()
        store.close()


# -- MQTT ----------------------------------------------------------------------------------------------


def test_mqtt_publishes_alerts_per_clause_and_retains_camera_status(db_url: str) -> None:
    if not mqtt_available():
        pytest.skip(f"no MQTT broker at {MQTT_HOST}:{MQTT_PORT}")
    prefix = f"pwtest-{uuid.uuid4().hex[:8]}"
    store = AlertStore(db_url)
    store.upgrade()
    hub = EventHub(store)
    collector = MqttCollector(f"{prefix}/#")
    publisher = MqttPublisher(f"mqtt://{MQTT_HOST}:{MQTT_PORT}/{prefix}", store, sites=["shop/a"])
    hub.add_sink(publisher)
    try:
        assert publisher.connected.wait(5)
        alert = store.open_alert(
            violation("d1.reception.02", "desk", track=None), "desk", "shop/a", t=12.0, at=T0
        )
        store.open_alert(violation("d1.reception.02", "desk", track=None), "desk", "shop-b", t=12.0, at=T0)
        topic, payload, _ = collector.wait_for(lambda t, p, r: t.endswith("/d1.reception.02"))
        assert topic == f"{prefix}/shop_a/desk/d1.reception.02"  # '/' in an id cannot split the topic
        assert payload["kind"] == "alert.opened" and payload["alert"]["id"] == alert.id
        store.set_camera_status("shop/a", "desk", connected=False, error="no such file")
        topic, payload, _ = collector.wait_for(lambda t, p, r: t.endswith("/status") and b"no such file" in p)
        assert topic == f"{prefix}/shop_a/desk/status" and payload["connected"] is False
        time.sleep(0.2)
        assert not [m for m in collector.messages if "shop-b" in m[0]]  # only this service's site
        late = MqttCollector(f"{prefix}/+/+/status")  # a subscriber arriving later gets the retained status
        _, payload, retained = late.wait_for(lambda t, p, r: b"no such file" in p)
        assert retained and payload["last_error"] == "no such file"
        late.close()
    finally:
        publisher.close()
        hub.close()
        collector.close()
        clear_retained(prefix)
        store.close()


def test_mqtt_urls_and_topic_levels() -> None:
    s = MqttSettings.parse("mqtts://user:p%40ss@broker.local/chain/east")
    assert (s.host, s.port, s.username, s.password, s.tls, s.prefix) == (
        "broker.local", 8883, "user", "p@ss", True, "chain/east",
    )  # fmt: skip
    assert (
        MqttSettings.parse("mqtt://10.0.0.5").port == 1883
        and MqttSettings.parse("mqtt://h").prefix == "postwatch"
    )
    with pytest.raises(ValueError):
        MqttSettings.parse("http://broker")
    assert topic_segment("a/b+c#d") == "a_b_c_d"
