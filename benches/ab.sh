#!/usr/bin/env bash
# Compares two builds of leadrelay end to end, in turns, on one dedicated Mosquitto:
# (a) the broker alone, (b) 1% hits at max rate, (d) every sighting a new durable task —
# e2e.sh's (a), (b) and (d) with the same settings. Each build measures itself with its own
# `simulate`. Rounds alternate A, B, A, B, ... so drift of the machine falls on both.
#
#   benches/ab.sh BIN_A BIN_B [--rounds N] [--count N] [--unique N]
#
# Prints one row per round and build: (a) msg/s, (b) sightings/s, (b)/(a), (d) tasks/s,
# and what was lost or duplicated (must be 0).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [--rounds N] [--count N] [--unique N]" >&2; exit 2; }
BINS=("$1" "$2"); shift 2
ROUNDS=3
COUNT=100000
UNIQUE=60000
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --count) COUNT="$2"; shift ;;
        --unique) UNIQUE="$2"; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for tool in jq curl mosquitto; do
    command -v "$tool" >/dev/null || { echo "ab.sh needs $tool" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/leadrelay-ab.XXXXXX)
RUN=$$
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open 18832; then echo "ab.sh: 127.0.0.1:18832 is taken" >&2; exit 2; fi
# The settings a durable consumer needs, as in e2e.sh.
cat >"$WORK/mosquitto.conf" <<CONF
listener 18832 127.0.0.1
allow_anonymous true
max_inflight_messages 10000
max_queued_messages 1000000
persistence false
CONF
mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
BROKER_PID=$!
SERVICE_PID=""
cleanup() { [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null; kill "$BROKER_PID" 2>/dev/null; true; }
trap cleanup EXIT
for _ in $(seq 50); do port_open 18832 && break; sleep 0.1; done
MQTT=mqtt://127.0.0.1:18832
HTTP_PORT=18190

start_service() { # bin name [serve args...]
    local bin=$1 name=$2; shift 2
    HTTP_PORT=$((HTTP_PORT + 1))
    PREFIX="ab-$RUN-$name/"
    # An admin token for simulate (LEADRELAY_TOKEN), from builds that have tokens.
    LEADRELAY_TOKEN=$("$bin" tokens create --name "ab $name $(date +%s%N)" --scope admin \
        --database-url "sqlite://$WORK/$name.db" 2>/dev/null || true)
    export LEADRELAY_TOKEN
    RUST_LOG=warn "$bin" serve --mqtt-url "$MQTT" --database-url "sqlite://$WORK/$name.db" \
        --http-addr "127.0.0.1:$HTTP_PORT" --client-id "lr-ab-$RUN-$name" --topic-prefix "$PREFIX" \
        "$@" >"$WORK/$name.log" 2>&1 &
    SERVICE_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "service $name did not become ready; see $WORK/$name.log" >&2
    exit 1
}
stop_service() { kill -TERM "$SERVICE_PID"; wait "$SERVICE_PID" 2>/dev/null || true; SERVICE_PID=""; sync; }
sim() { # bin name args... → $WORK/name.json
    local bin=$1 name=$2; shift 2
    "$bin" simulate --mqtt-url "$MQTT" --topic-prefix "$PREFIX" --http "http://127.0.0.1:$HTTP_PORT" \
        --json "$@" >"$WORK/$name.json" 2>"$WORK/$name.sim.log" ||
        { echo "simulate $name failed:" >&2; cat "$WORK/$name.sim.log" >&2; exit 1; }
}
j() { jq -r "$2" "$WORK/$1.json"; }

echo "== work dir $WORK; A = ${BINS[0]}, B = ${BINS[1]}"
printf '| round | build | (a) msg/s | (b) sightings/s | (b)/(a) | (d) tasks/s | lost / duplicated |\n|---|---|---|---|---|---|---|\n' >"$WORK/table.md"
for round in $(seq "$ROUNDS"); do
    for k in 0 1; do
        bin=${BINS[$k]}; label=$([ "$k" = 0 ] && echo A || echo B); n="$round$label"
        PREFIX="ab-$RUN-raw$n/"
        sim "$bin" "a$n" --baseline --count "$COUNT"
        start_service "$bin" "b$n"
        sim "$bin" "b$n" --hit-ratio 0.01 --count "$COUNT" --duplicate-ratio 0.001 --malformed-ratio 0.001 --outside-ratio 0.02
        stop_service
        start_service "$bin" "d$n" --max-batch 2000
        sim "$bin" "d$n" --unique-hits --hit-ratio 1 --fuzzy-ratio 0 --targets "$UNIQUE" --count "$UNIQUE" --seed 3 --window 5000 --threads 1
        stop_service
        ta=$(j "a$n" '.throughput|floor'); tb=$(j "b$n" '.throughput|floor'); td=$(j "d$n" '.throughput|floor')
        bad=$(jq -s 'map(.tasks.missing + .tasks.duplicated + .tasks.unexpected) | add' "$WORK/b$n.json" "$WORK/d$n.json")
        row=$(printf '| %s | %s | %s | %s | %.2f | %s | %s |' "$round" "$label" "$ta" "$tb" "$(echo "$tb / $ta" | bc -l)" "$td" "$bad")
        echo "$row" | tee -a "$WORK/table.md"
    done
done
echo
echo "Machine: $(nproc) vCPU, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
cat "$WORK/table.md"
