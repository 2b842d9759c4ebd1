"""Real receivers for alerts, on loopback ports of the test's own: an HTTP server and a private
Mosquitto broker (Debian's /usr/sbin/mosquitto; never the machine's shared one)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Webhook:
    """A webhook receiver: answers ``status`` (200, or e.g. 503 to play an outage) and keeps what came."""

    url: str = ""
    status: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def wait_for(self, count: int, seconds: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + seconds
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.deliveries


@contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if hook.status == 200:
                hook.deliveries.append(Delivery(dict(self.headers), body, time.time()))
            self.send_response(hook.status)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.server, hook.url = server, f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Broker:
    port: int
    folder: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def subscribed(port: int, topic: str) -> Iterator[list[Any]]:
    """Messages arriving on ``topic`` (wildcards allowed) while the block runs, at QoS 1."""
    import paho.mqtt.client as mqtt

    received: list[Any] = []
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
    client.on_message = lambda _c, _u, message: received.append(message)
    client.on_subscribe = lambda *_: ready.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10), "no SUBACK from the broker"
    try:
        yield received
    finally:
        client.disconnect()
        client.loop_stop()
