#!/usr/bin/env bash
# Make sure PostgreSQL, Redis, RabbitMQ and NATS (with JetStream) are reachable on 127.0.0.1:
# install them with apt-get when absent, start them when stopped. Used by `make test` locally
# and in CI.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "ensure-services: installing PostgreSQL"
  apt_install postgresql postgresql-contrib
fi
if ! pg_ready; then
  echo "ensure-services: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # Local development and CI use trust auth on loopback, as the machine images do.
  if ! grep -qE '^host\s+all\s+all\s+127.0.0.1/32\s+trust' "$hba"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
pg_ready || { echo "ensure-services: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }

# Backups need pg_dump / pg_restore of the server's major version (Debian: postgresql-client-N).
pg_version=$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version_num' 2>/dev/null || true)
if [ -n "$pg_version" ] && [ ! -x "/usr/lib/postgresql/$((pg_version / 10000))/bin/pg_dump" ]; then
  echo "ensure-services: installing postgresql-client-$((pg_version / 10000)) (pg_dump for backups)"
  apt_install "postgresql-client-$((pg_version / 10000))"
fi
# The stock `age` tool: tests prove an encrypted backup decrypts with it (as an operator would).
if ! command -v age >/dev/null 2>&1; then
  echo "ensure-services: installing age (decrypting backups by hand)"
  apt_install age
fi

# Physical backups and point-in-time recovery drive pgBackRest (engine "physical").
if ! command -v pgbackrest >/dev/null 2>&1; then
  echo "ensure-services: installing pgbackrest (physical backups, PITR)"
  apt_install pgbackrest
fi
# Headless Chromium: tests render the validation Data Docs pages offline, as a browser would.
if ! command -v chromium >/dev/null 2>&1; then
  echo "ensure-services: installing chromium (Data Docs rendering tests)"
  apt_install chromium
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "ensure-services: installing Redis"
  apt_install redis-server
fi
if ! redis_ready; then
  echo "ensure-services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 30); do redis_ready && break; sleep 1; done
redis_ready || { echo "ensure-services: Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
# The outbox relay's broker sinks are tested against RabbitMQ (5672, guest/guest) and NATS
# JetStream (4222). Debian packages: rabbitmq-server, nats-server.
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "ensure-services: installing RabbitMQ"
  apt_install rabbitmq-server
fi
if ! port_open 5672; then
  echo "ensure-services: starting RabbitMQ"
  $SUDO rabbitmq-server -detached
fi
if ! command -v nats-server >/dev/null 2>&1; then
  echo "ensure-services: installing NATS"
  apt_install nats-server
fi
if ! port_open 4222; then
  echo "ensure-services: starting NATS with JetStream"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
fi
for _ in $(seq 1 120); do port_open 5672 && port_open 4222 && break; sleep 1; done
port_open 5672 || { echo "ensure-services: RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1; }
port_open 4222 || { echo "ensure-services: NATS did not come up on 127.0.0.1:4222" >&2; exit 1; }
echo "ensure-services: PostgreSQL, Redis, RabbitMQ and NATS are up"
