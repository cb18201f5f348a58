#!/usr/bin/env bash
# The soak: leadrelay under a steady load well below saturation for a long time, sampled
# every minute — sent, hits, tasks and updates back, p50/p99 publish→task latency, and the
# service's RSS, open fds and outbox backlog — ending with whether RSS and fds at the first
# and the last minute grew by more than --flat-within percent (the run then fails).
#
#   benches/soak.sh [--duration 30m] [--rate 1000] [--sample-every 60s] [--flat-within 10]
#                   [--postgres URL] [--system-mosquitto] [--bin PATH]
#
# Default: the release binary (built first), its own SQLite file, and a dedicated Mosquitto
# on 127.0.0.1:18833 configured as e2e.sh's (no other client shares it). --postgres URL puts
# the service on that database instead (it must be empty of other runs' targets: the run
# uses a new seed per invocation). --system-mosquitto uses the machine's broker on 1883.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=30m
# 1% of what one service handled at max rate on this machine (benches/README.md, (b)): a
# steady state with the cores mostly idle, so what grows is the service, not a queue.
RATE=1000
EVERY=60s
FLAT=10
DATABASE=""
SYSTEM_MOSQUITTO=0
BIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --sample-every) EVERY="$2"; shift ;;
        --flat-within) FLAT="$2"; shift ;;
        --postgres) DATABASE="$2"; shift ;;
        --system-mosquitto) SYSTEM_MOSQUITTO=1 ;;
        --bin) BIN="$2"; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for tool in curl mosquitto; do
    command -v "$tool" >/dev/null || { echo "soak.sh needs $tool" >&2; exit 2; }
done
if [ -z "$BIN" ]; then
    cargo build --release --bin leadrelay
    BIN=target/release/leadrelay
fi

WORK=$(mktemp -d /tmp/leadrelay-soak.XXXXXX)
RUN=$$
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
BROKER_PID=""
SERVICE_PID=""
cleanup() {
    [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null
    true
}
trap cleanup EXIT

if [ "$SYSTEM_MOSQUITTO" = 1 ]; then
    MQTT=mqtt://127.0.0.1:1883
    port_open 1883 || { echo "soak.sh: nothing listens on 127.0.0.1:1883 (mosquitto -d)" >&2; exit 2; }
    BROKER="the machine's Mosquitto on 127.0.0.1:1883 (its own config)"
else
    if port_open 18833; then echo "soak.sh: 127.0.0.1:18833 is taken" >&2; exit 2; fi
    cat >"$WORK/mosquitto.conf" <<CONF
listener 18833 127.0.0.1
allow_anonymous true
max_inflight_messages 10000
max_queued_messages 1000000
persistence false
CONF
    mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 50); do port_open 18833 && break; sleep 0.1; done
    MQTT=mqtt://127.0.0.1:18833
    BROKER="a dedicated Mosquitto on 127.0.0.1:18833 (max_inflight_messages 10000, max_queued_messages 1000000)"
fi
[ -n "$DATABASE" ] || DATABASE="sqlite://$WORK/soak.db"
HTTP_PORT=18290
while port_open "$HTTP_PORT"; do HTTP_PORT=$((HTTP_PORT + 1)); done
PREFIX="soak-$RUN/"

# An admin token for the generator: it loads the targets and reads /metrics.
export LEADRELAY_TOKEN
LEADRELAY_TOKEN=$("$BIN" tokens create --name "soak $RUN" --scope admin --database-url "$DATABASE" | tail -n 1)
RUST_LOG=warn "$BIN" serve --mqtt-url "$MQTT" --database-url "$DATABASE" \
    --http-addr "127.0.0.1:$HTTP_PORT" --client-id "lr-soak-$RUN" --topic-prefix "$PREFIX" \
    >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 ||
    { echo "the service did not become ready; see $WORK/service.log" >&2; exit 1; }

echo "== work dir $WORK; $BROKER; database ${DATABASE%%\?*}; service pid $SERVICE_PID"
echo "Machine: $(nproc) vCPU, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
echo "Command: simulate --duration $DURATION --rate $RATE --hit-ratio 0.01 --sample-every $EVERY --watch-pid $SERVICE_PID --flat-within $FLAT"
# A seed per run: targets of an earlier run on the same database would already have tasks.
STATUS=0
"$BIN" simulate --mqtt-url "$MQTT" --topic-prefix "$PREFIX" --http "http://127.0.0.1:$HTTP_PORT" \
    --duration "$DURATION" --rate "$RATE" --hit-ratio 0.01 --seed "$RUN" --threads 1 \
    --sample-every "$EVERY" --watch-pid "$SERVICE_PID" --flat-within "$FLAT" \
    2>"$WORK/simulate.log" | tee "$WORK/report.txt" || STATUS=$?
kill -TERM "$SERVICE_PID"
wait "$SERVICE_PID" 2>/dev/null || true
SERVICE_PID=""
if [ "$STATUS" != 0 ]; then
    echo "soak: FAILED (simulate exit $STATUS; its log: $WORK/simulate.log)" >&2
    exit "$STATUS"
fi
echo "soak: passed"
