"""A sink that refuses the configured credentials is a configuration error, not a delivery
failure: ``steward outbox relay`` exits 2 with one line naming the sink and the setting (never
the secret), and every event stays as it was (pending, no attempt counted, nothing dead).

Each sink meets a real server refusing it: a private redis-server with a password (wrong
password, and none given), the machine's RabbitMQ with a wrong password for ``guest``, a private
nats-server requiring a user, and a private moto S3 server checking credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.private_servers import PrivateMoto, PrivateRedis
from tests.outbox.brokers import PrivateNats

REPO = Path(__file__).resolve().parents[2]
STEWARD = str(Path(sys.executable).with_name("steward"))
SECRET = "Wr0ng-s3cret/#?"  # what the test configures: it must never be printed

pytestmark = pytest.mark.usefixtures("prefect_harness")


def relay_once() -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(
        os.environ, COLUMNS="250", NO_COLOR="1", PREFECT_API_URL=str(PREFECT_API_URL.value())
    )
    return subprocess.run(
        [STEWARD, "outbox", "relay"], capture_output=True, text=True, timeout=180, cwd=REPO,
        env=env,
    )  # fmt: skip


def assert_refused(env, done: subprocess.CompletedProcess[str], sink: str, setting: str) -> None:
    """Exit 2, one error line naming sink and setting, no secret, events untouched."""
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert SECRET not in done.stdout + done.stderr and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-2000:]
    assert sink in lines[0] and setting in lines[0] and "authentication failed" in lines[0]
    rows = env.rows()
    assert len(rows) == 4
    assert {(row.status, row.attempts, row.last_error) for row in rows} == {("pending", 0, None)}


@pytest.fixture
def refusing_redis(make_private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return make_private_redis(password="the-right-one")


@pytest.mark.parametrize("password", [SECRET, None], ids=["wrong-password", "no-password"])
def test_redis_refusing_the_relay_touches_no_event(outbox_env, refusing_redis, password):
    auth = f":{password}@" if password else ""
    env = outbox_env.reconfigure(cache__url=f"redis://{auth}127.0.0.1:{refusing_redis.port}/0")
    env.fill(4, 2)
    assert_refused(env, relay_once(), "redis_streams", "cache.url")


def test_rabbitmq_refusing_guest_touches_no_event(outbox_env):
    url = f"amqp://guest:{SECRET}@127.0.0.1:5672/"
    env = outbox_env.reconfigure(outbox__sinks='["rabbitmq"]', outbox__rabbitmq__url=url)
    env.fill(4, 2)
    assert_refused(env, relay_once(), "rabbitmq", "outbox.rabbitmq.url")


@pytest.fixture
def nats_with_login(tmp_path: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(tmp_path / "nats", login=("steward", "the-right-one"))
    server.start()
    yield server
    server.stop()


def test_nats_refusing_the_user_touches_no_event(outbox_env, nats_with_login):
    url = f"nats://steward:{SECRET}@127.0.0.1:{nats_with_login.port}"
    env = outbox_env.reconfigure(
        outbox__sinks='["nats"]', outbox__nats__url=url, outbox__broker_timeout_seconds="3"
    )
    env.fill(4, 2)
    assert_refused(env, relay_once(), "nats", "outbox.nats.url")


def test_s3_history_refusing_the_key_touches_no_event(outbox_env, make_private_moto):
    moto: PrivateMoto = make_private_moto(check_credentials=True)
    env = outbox_env.reconfigure(
        outbox__sinks='["event_history"]',
        objects__url="s3://steward-history/app",
        objects__endpoint_url=moto.url,
        objects__access_key_id="steward-test-key",
        objects__secret_access_key=SECRET,
        objects__max_attempts="1",
    )
    env.fill(4, 2)
    assert_refused(env, relay_once(), "event_history", "objects.")
