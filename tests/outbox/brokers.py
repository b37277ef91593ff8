"""Reading what the broker sinks published (RabbitMQ queues, JetStream streams), and private
broker servers a test may stop and restart (never the machine's own)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_missing

RABBIT_URL = os.environ.get("STEWARD_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("STEWARD_TEST_NATS", "nats://127.0.0.1:4222")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Delivered:
    """One message as a consumer sees it."""

    event_id: str
    key: str  # routing key / subject
    aggregate: str  # type:id
    body: bytes
    headers: dict[str, Any]
    persistent: bool = True


# --- RabbitMQ ----------------------------------------------------------------------------


def rabbit_ready(url: str = RABBIT_URL) -> None:
    if not port_open(int(url.rsplit(":", 1)[1].split("/")[0])):
        service_missing(f"RabbitMQ at {url.split('@')[-1]}")


def bind_queue(exchange: str, binding: str = "#", url: str = RABBIT_URL) -> str:
    """Declare the durable topic exchange and a queue bound to it; the queue's name."""
    import aio_pika

    queue_name = unique("steward-test-q-")

    async def run() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(queue_name, durable=True)
            await queue.bind(ex, binding)

    asyncio.run(run())
    return queue_name


def drain_queue(queue_name: str, url: str = RABBIT_URL) -> list[Delivered]:
    """Every message in the queue, in queue order (acknowledged and so removed)."""
    import aio_pika

    async def run() -> list[Delivered]:
        found: list[Delivered] = []
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, durable=True)
            while (message := await queue.get(fail=False, timeout=5)) is not None:
                await message.ack()
                found.append(
                    Delivered(
                        str(message.message_id),
                        str(message.routing_key),
                        f"{message.headers['aggregate_type']}:{message.headers['aggregate_id']}",
                        message.body,
                        dict(message.headers),
                        message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
                    )
                )
        return found

    return asyncio.run(run())


def delete_rabbit(exchange: str, queues: list[str], url: str = RABBIT_URL) -> None:
    import aio_pika

    async def run() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            await channel.exchange_delete(exchange)

    asyncio.run(run())


# --- NATS JetStream ---------------------------------------------------------------------


def nats_ready(url: str = NATS_URL) -> None:
    if not port_open(int(url.rsplit(":", 1)[1])):
        service_missing(f"NATS at {url}")


def read_stream(stream: str, url: str = NATS_URL) -> list[Delivered]:
    """Every message stored in the stream, in stream order."""
    import nats

    async def run() -> list[Delivered]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            info = await js.stream_info(stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                headers = dict(msg.headers or {})
                found.append(
                    Delivered(
                        headers["Nats-Msg-Id"],
                        msg.subject,
                        f"{headers['Steward-Aggregate-Type']}:{headers['Steward-Aggregate-Id']}",
                        msg.data,
                        headers,
                    )
                )
            return found
        finally:
            await client.close()

    return asyncio.run(run())


def delete_stream(stream: str, url: str = NATS_URL) -> None:
    import nats
    from nats.js.errors import NotFoundError

    async def run() -> None:
        client = await nats.connect(url)
        try:
            await client.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
        finally:
            await client.close()

    asyncio.run(run())


class PrivateNats:
    """A nats-server with JetStream on a free port and its own store, for restart tests."""

    def __init__(self, folder: Path, login: tuple[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.login = login  # (user, password) the server requires, if any
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            pytest.fail("nats-server is not installed (scripts/ensure-services.sh installs it)")
        argv = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.folder)]
        if self.login:
            argv += ["--user", self.login[0], "--pass", self.login[1]]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            if time.monotonic() > deadline:
                pytest.fail(f"private nats-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): JetStream writes its store before exiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


class PrivateRabbit:
    """A RabbitMQ node of the test's own (node name, ports, data in a temp folder), for
    restart tests; the machine's node is never touched. Starting one takes 10-30 s."""

    BIN = Path("/usr/lib/rabbitmq/bin")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"stewardtest{self.port}@localhost"
        (folder / "enabled_plugins").write_text("[].\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.folder),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbitmq.pid"),
        }

    def start(self) -> None:
        if not (self.BIN / "rabbitmq-server").exists():
            pytest.fail("rabbitmq-server is not installed (scripts/ensure-services.sh installs it)")
        self.process = subprocess.Popen(
            [str(self.BIN / "rabbitmq-server")],
            cwd=self.folder,
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while not port_open(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"private RabbitMQ node {self.node} did not start")
            time.sleep(0.25)

    def stop(self) -> None:
        """A clean stop through rabbitmqctl (of this node only)."""
        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run(
            [str(self.BIN / "rabbitmqctl"), "-n", self.node, "stop"],
            env=self._env(),
            cwd=self.folder,
            capture_output=True,
            timeout=120,
        )
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
