#!/usr/bin/env bash
# End-to-end benchmarks, as ratios against baselines run in the same run.
#
#   benches/e2e.sh [--embedded | --system-mosquitto | --tls] [--count N] [--unique N] [--skip-criterion]
#                  [--postgres [--replicas N]] [--skip-scale]
#
# --postgres: (b) and (d) again with the service on PostgreSQL ($LEADRELAY_BENCH_PG, a database
# created for each run), once with one replica and once with N (--replicas, default 2) sharing
# the stream (--share-group); (d)'s row adds PostgreSQL's CPU per task and its commits.
# --skip-scale: no (e) and (f) (no PostGIS, no release build of the benches).
#
# --tls: the dedicated Mosquitto also listens with TLS on 127.0.0.1:18833 (a CA and a
# certificate for localhost made in the work dir); (a) and (b) run over both listeners of
# the same broker, alternating, and only that table is printed.
#
# By default a dedicated Mosquitto runs on 127.0.0.1:18831 with the settings a durable
# consumer needs (max_inflight_messages 10000, max_queued_messages 1000000): the service acks
# each sighting only after its effect is durable, and Mosquitto's defaults (20 in flight,
# 1,000 queued per client) drop QoS 1 messages once a commit's worth is outstanding. The raw
# baseline runs through the same broker. --system-mosquitto uses the machine's own broker
# on 1883 with its configuration as it is.
#
# (a) raw broker baseline (publisher → subscriber, no leadrelay), and the publisher alone;
#     and (r) a relay that does no work in leadrelay's place, carrying (d)'s traffic;
# (b) leadrelay at 1% hits, max rate → throughput as a ratio of (a);
# (c) leadrelay at half of (b)'s rate → p99 publish→task latency;
# (d) 100% hits, each a different target → durable tasks/s;
# (e) PostGIS ST_Contains on the same polygons and points vs in-process locate;
# (f) hotlist at 10³/10⁵/10⁷, the national county set with a 10⁷ hotlist, and what a load
#     pays when its page is not in the TLB (scale -- tlb).
# Prints one table at the end (also left in $WORK/table.md).
set -euo pipefail
cd "$(dirname "$0")/.."

EMBEDDED=0
SYSTEM_MOSQUITTO=0
TLS=0
COUNT=200000
UNIQUE=100000
CRITERION=1
POSTGRES=0
REPLICAS=2
SCALE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --embedded) EMBEDDED=1 ;;
        --system-mosquitto) SYSTEM_MOSQUITTO=1 ;;
        --count) COUNT="$2"; shift ;;
        --unique) UNIQUE="$2"; shift ;;
        --skip-criterion) CRITERION=0 ;;
        --tls) TLS=1 ;;
        --postgres) POSTGRES=1 ;;
        --replicas) REPLICAS="$2"; shift ;;
        --skip-scale) SCALE=0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for tool in jq curl; do
    command -v "$tool" >/dev/null || { echo "e2e.sh needs $tool" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/leadrelay-e2e.XXXXXX)
BIN=${CARGO_TARGET_DIR:-target}/release/leadrelay
RUN=$$
PGURL=${LEADRELAY_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
echo "== work dir $WORK"

echo "== building (release)"
cargo build --release --quiet

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "$EMBEDDED" = 1 ]; then
    MQTT_PORT=18830
    MQTT=mqtt://127.0.0.1:$MQTT_PORT
    BROKER="embedded (rumqttd in the service)"
elif [ "$SYSTEM_MOSQUITTO" = 1 ]; then
    MQTT=mqtt://127.0.0.1:1883
    if ! port_open 1883; then
        echo "== starting Mosquitto"
        mosquitto -d
        sleep 1
    fi
    BROKER="Mosquitto $( (mosquitto -h 2>/dev/null || true) | awk 'NR==1{print $3}') on 127.0.0.1:1883 (its own config)"
else
    # Another broker on the port would take the run's traffic, with other settings, and its
    # CPU would go unmeasured.
    if port_open 18831; then
        echo "e2e.sh: 127.0.0.1:18831 is taken (an earlier run's Mosquitto?); stop it first" >&2
        exit 2
    fi
    cat >"$WORK/mosquitto.conf" <<CONF
per_listener_settings false
listener 18831 127.0.0.1
allow_anonymous true
max_inflight_messages 10000
max_queued_messages 1000000
persistence false
log_dest file $WORK/mosquitto.log
CONF
    if [ "$TLS" = 1 ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=e2e CA" \
            -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
        echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$WORK/san.ext"
        openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
            -CAcreateserial -days 2 -extfile "$WORK/san.ext" -out "$WORK/server.crt" 2>/dev/null
        # Started by root, Mosquitto would switch to its own user, which cannot read the
        # private work dir's key.
        [ "$(id -u)" = 0 ] && echo "user root" >>"$WORK/mosquitto.conf"
        cat >>"$WORK/mosquitto.conf" <<CONF
listener 18833 127.0.0.1
cafile $WORK/ca.crt
certfile $WORK/server.crt
keyfile $WORK/server.key
CONF
    fi
    mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 50); do port_open 18831 && break; sleep 0.1; done
    if ! kill -0 "$BROKER_PID" 2>/dev/null || ! port_open 18831; then
        echo "e2e.sh: the dedicated Mosquitto did not start; see $WORK/mosquitto.log" >&2
        exit 1
    fi
    MQTT=mqtt://127.0.0.1:18831
    BROKER="Mosquitto $( (mosquitto -h 2>/dev/null || true) | awk 'NR==1{print $3}') on 127.0.0.1:18831 (max_inflight_messages 10000, max_queued_messages 1000000)"
fi

pg() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$PGURL" "$@"; }
# The service's database: SQLite, or with DB_KIND=postgres a PostgreSQL database of the run's
# own (its sessions and pg_stat_database row are then the run's alone).
DB_KIND=sqlite
PG_DB=""
# Replicas start_service starts, sharing the stream when more than one.
SERVICE_COUNT=1
SERVICE_PID=""
SERVICE_PIDS=()
SERVICE_HTTP=""
REPLICA_HTTP=()
SERVICE_NAME=""
HTTP_PORT=18090
start_service() { # name [serve args...]
    local name=$1; shift
    SERVICE_NAME=$name
    PREFIX="bench-$RUN-$name/"
    local db="sqlite://$WORK/$name.db"
    if [ "$DB_KIND" = postgres ]; then
        PG_DB="lr_bench_${RUN}_${name//-/_}"
        pg -c "CREATE DATABASE $PG_DB" >/dev/null
        local base=${PGURL%%\?*}
        db="${base%/*}/$PG_DB${PGURL#"$base"}"
    fi
    local broker_args=(--mqtt-url "$MQTT")
    [ "$EMBEDDED" = 1 ] && broker_args=(--embedded-broker-addr "127.0.0.1:$MQTT_PORT")
    # An admin token for simulate (LEADRELAY_TOKEN: it loads targets, reads metrics) and curl.
    LEADRELAY_TOKEN=$("$BIN" tokens create --name "bench $name $(date +%s%N)" --scope admin \
        --database-url "$db" 2>/dev/null)
    export LEADRELAY_TOKEN
    local share=() log i
    [ "$SERVICE_COUNT" -gt 1 ] && share=(--share-group "bench-$RUN-$name")
    SERVICE_PIDS=(); REPLICA_HTTP=()
    for i in $(seq "$SERVICE_COUNT"); do
        HTTP_PORT=$((HTTP_PORT + 1))
        log="$WORK/$name.service.log"; [ "$i" = 1 ] || log="$WORK/$name.service$i.log"
        RUST_LOG=${RUST_LOG:-warn} "$BIN" serve "${broker_args[@]}" \
            --database-url "$db" --http-addr "127.0.0.1:$HTTP_PORT" \
            --client-id "lr-bench-$RUN-$name$( [ "$i" = 1 ] || echo "-$i")" --topic-prefix "$PREFIX" \
            "${share[@]}" "$@" >"$log" 2>&1 &
        SERVICE_PIDS+=($!)
        if [ "$i" = 1 ]; then
            SERVICE_PID=$!; SERVICE_HTTP="http://127.0.0.1:$HTTP_PORT"
        else
            REPLICA_HTTP+=(--replica-http "http://127.0.0.1:$HTTP_PORT")
        fi
        local ready=0
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && { ready=1; break; }
            kill -0 "$!" 2>/dev/null || break
            sleep 0.2
        done
        if [ "$ready" = 0 ]; then
            echo "service $name did not become ready; see $log" >&2
            tail -5 "$log" >&2
            exit 1
        fi
    done
}
stop_service() {
    [ -n "$SERVICE_PID" ] || return 0
    # The service's own view of the run (stage and commit histograms), for the analysis.
    curl -sf -H "Authorization: Bearer $LEADRELAY_TOKEN" "$SERVICE_HTTP/metrics" >"$WORK/$SERVICE_NAME.metrics" 2>/dev/null || true
    local pid
    for pid in "${SERVICE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SERVICE_PID=""; SERVICE_PIDS=(); REPLICA_HTTP=()
    if [ -n "$PG_DB" ]; then
        pg -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
    # Write back this run's files now, so the next run's fsyncs do not queue behind them.
    sync
}
BROKER_PID=${BROKER_PID:-}
cleanup() { stop_service; [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null; true; }
trap cleanup EXIT

# CPU time (user + system, in clock ticks) a process has used so far; 0 if it is gone.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The same, summed over the service's replicas.
service_ticks() {
    local pid total=0
    for pid in "${SERVICE_PIDS[@]}"; do total=$((total + $(cpu_ticks "$pid"))); done
    echo "$total"
}
# "pid ticks" of the PostgreSQL processes working for the run: the sessions on its database
# and the server's background processes (WAL writer, checkpointer, ...), which serve every
# database. Sessions that end before the run does are not counted.
pg_ticks() {
    local pid
    for pid in $(pg -c "SELECT pid FROM pg_stat_activity WHERE datname = '$PG_DB' OR backend_type <> 'client backend'"); do
        echo "$pid $(cpu_ticks "$pid")"
    done
}
pg_commits() { pg -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$PG_DB'"; }
TICKS_PER_S=$(getconf CLK_TCK)

# CPU seconds (user + system) in a saved `times` output (`times` in a $(...) subshell would see
# only that subshell's children), from line FIRST to line 2: 2 for the finished children, 1 for
# the shell and its finished children.
times_cpu() { # file first-line
    awk -v first="$2" 'NR>=first && NR<=2{split($1,u,/[ms]/); split($2,s,/[ms]/); t+=u[1]*60+u[2]+s[1]*60+s[2]} END{print t}' "$1"
}

sim() { # name args... → $WORK/name.json; CPU seconds meanwhile of the service ($WORK/name.cpu,
        # and name.cpu-dispatch from when the generator had loaded its targets), of the
        # dedicated broker (name.broker-cpu) and of the generator (name.gen-cpu)
    local name=$1; shift
    echo "== $name: simulate $*"
    local before=0 broker_before=0 gen watcher=""
    # PostgreSQL's counters first: psql's CPU must not count as the generator's.
    if [ -n "$PG_DB" ]; then pg_ticks >"$WORK/$name.pg-before"; pg_commits >"$WORK/$name.commits-before"; fi
    [ -n "$SERVICE_PID" ] && before=$(service_ticks)
    [ -n "$BROKER_PID" ] && broker_before=$(cpu_ticks "$BROKER_PID")
    times >"$WORK/times.before"
    echo 0 >"$WORK/$name.watcher-cpu"
    "$BIN" simulate --mqtt-url "$MQTT" --topic-prefix "$PREFIX" --http "${SERVICE_HTTP:-http://127.0.0.1:$HTTP_PORT}" \
        "${REPLICA_HTTP[@]}" --json "$@" >"$WORK/$name.json" 2>"$WORK/$name.sim.log" &
    gen=$!
    if [ -n "$SERVICE_PID" ]; then
        # The service's CPU once the generator has loaded its targets over HTTP, so that what
        # follows is the sightings' share alone. The watcher's own CPU is taken off the
        # generator's below.
        (
            trap 'times >"$WORK/$name.watcher-times"; times_cpu "$WORK/$name.watcher-times" 1 >"$WORK/$name.watcher-cpu"' EXIT
            until grep -q '^loaded' "$WORK/$name.sim.log" 2>/dev/null; do
                kill -0 "$gen" 2>/dev/null || exit 0
                sleep 0.05
            done
            service_ticks >"$WORK/$name.cpu-at-load"
            if [ -n "$PG_DB" ]; then pg_ticks >"$WORK/$name.pg-at-load"; pg_commits >"$WORK/$name.commits-at-load"; fi
        ) &
        watcher=$!
    fi
    wait "$gen" || true
    [ -n "$watcher" ] && { wait "$watcher" || true; }
    # The generator's CPU: with the watcher, the only children to finish meanwhile.
    times >"$WORK/times.after"
    echo "$(times_cpu "$WORK/times.after" 2) - $(times_cpu "$WORK/times.before" 2) - $(cat "$WORK/$name.watcher-cpu")" |
        bc -l >"$WORK/$name.gen-cpu"
    if [ -n "$PG_DB" ]; then
        pg_ticks >"$WORK/$name.pg-after"
        local commits; commits=$(pg_commits)
        # From the start, and from when the generator had loaded its targets.
        for from in before at-load; do
            [ -s "$WORK/$name.pg-$from" ] || continue
            awk -v hz="$TICKS_PER_S" 'NR==FNR{b[$1]=$2; next} {t += $2 - (($1 in b) ? b[$1] : 0)} END{printf "%.2f\n", t / hz}' \
                "$WORK/$name.pg-$from" "$WORK/$name.pg-after" >"$WORK/$name.pg-cpu-$from"
            echo "$commits - $(cat "$WORK/$name.commits-$from")" | bc >"$WORK/$name.commits-$from-diff"
        done
    fi
    if ! jq -e . "$WORK/$name.json" >/dev/null 2>&1; then
        echo "simulate $name failed:" >&2; cat "$WORK/$name.sim.log" >&2; exit 1
    fi
    if [ -n "$SERVICE_PID" ]; then
        local now; now=$(service_ticks)
        echo "scale=2; ($now - $before) / $TICKS_PER_S" | bc -l >"$WORK/$name.cpu"
        if [ -s "$WORK/$name.cpu-at-load" ]; then
            echo "scale=2; ($now - $(cat "$WORK/$name.cpu-at-load")) / $TICKS_PER_S" | bc -l >"$WORK/$name.cpu-dispatch"
        fi
    fi
    if [ -n "$BROKER_PID" ]; then
        echo "scale=2; ($(cpu_ticks "$BROKER_PID") - $broker_before) / $TICKS_PER_S" | bc -l >"$WORK/$name.broker-cpu"
    fi
    jq -c '{mode, sent, publish_rate: (.publish_rate|floor), throughput: (.throughput|floor),
            tasks: .tasks.received, missing: (.tasks.missing + .updates.missing + .dead_letters.missing + .delivered.missing),
            dup: (.tasks.duplicated + .updates.duplicated), lost: .lost_before_service, p99: .latency.p99_ms, ok}' "$WORK/$name.json"
}
j() { jq -r "$2" "$WORK/$1.json"; }

if [ "$TLS" = 1 ]; then
    [ "$EMBEDDED" = 0 ] && [ "$SYSTEM_MOSQUITTO" = 0 ] || { echo "--tls needs the dedicated broker" >&2; exit 2; }
    PLAIN_MQTT=$MQTT
    TLS_MQTT=mqtts://localhost:18833
    for round in 1 2; do
        for mode in plain tls; do
            if [ "$mode" = tls ]; then
                MQTT=$TLS_MQTT; CA=(--mqtt-ca-file "$WORK/ca.crt")
            else
                MQTT=$PLAIN_MQTT; CA=()
            fi
            PREFIX="bench-$RUN-raw-$mode$round/"
            sim "a-$mode$round" --baseline --count "$COUNT" "${CA[@]}"
            start_service "b-$mode$round" "${CA[@]}"
            sim "b-$mode$round" --hit-ratio 0.01 --count "$COUNT" "${CA[@]}" --seed "$((10 + round))"
            stop_service
        done
    done
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); broker: $BROKER; TLS listener 127.0.0.1:18833"
    echo
    echo "| round | listener | (a) raw broker msg/s | (b) leadrelay msg/s | (b)/(a) | tasks missing/dup |"
    echo "|---|---|---|---|---|---|"
    for round in 1 2; do
        for mode in plain tls; do
            ta=$(j "a-$mode$round" '.throughput|floor'); tb=$(j "b-$mode$round" '.throughput|floor')
            bad=$(j "b-$mode$round" '.tasks.missing + .tasks.duplicated')
            echo "| $round | $mode | $ta | $tb | $(printf '%.2f' "$(echo "$tb / $ta" | bc -l)") | $bad |"
        done
    done | tee "$WORK/table.md"
    exit 0
fi

# (a) the broker's own ceiling, and the publisher's.
if [ "$EMBEDDED" = 1 ]; then start_service a; PREFIX="bench-$RUN-raw/"; else PREFIX="bench-$RUN-raw/"; fi
sim a0 --publish-only --count "$COUNT"
sim a --baseline --count "$COUNT"
# (d)'s baseline: the same broker carrying (d)'s traffic (per task: a sighting in, a Task and
# an Alert out, the Alert heard by nobody) with a stand-in for leadrelay that does no work,
# closed loop like (d). Both closed-loop runs put the generator on one thread (--threads 1):
# there its CPU is taken from the broker and the service, not spent outpacing them.
sim r --baseline --relay --count "$UNIQUE" --window "${WINDOW:-5000}" --threads 1
stop_service

# (b) leadrelay at 1% hits, max rate.
start_service b
sim b --hit-ratio 0.01 --count "$COUNT" --duplicate-ratio 0.001 --malformed-ratio 0.001 --outside-ratio 0.02
stop_service
TB=$(j b '.throughput|floor')

# (c) half of (b)'s rate, for latency.
HALF=$((TB / 2))
[ "$HALF" -ge 100 ] || HALF=100
start_service c
sim c --hit-ratio 0.01 --rate "$HALF" --count $((HALF * 20)) --duplicate-ratio 0.001 --malformed-ratio 0.001 --outside-ratio 0.02 --seed 2
stop_service

# (d) every sighting a new durable task. Closed loop (--window): the broker queues at most
# max_queued_messages (Mosquitto: 1000) for the service and drops the rest, so an open-loop
# publisher faster than the service would measure drops.
# A throughput deployment: group commits of up to 2,000 (the default 500 favours latency),
# and a window large enough to keep several commits' worth in flight.
start_service d --max-batch 2000
sim d --unique-hits --hit-ratio 1 --fuzzy-ratio 0 --targets "$UNIQUE" --count "$UNIQUE" --seed 3 --window "${WINDOW:-5000}" --threads 1
stop_service

# (b) and (d) with the service on PostgreSQL: one replica, then $REPLICAS sharing the stream.
PG_RUNS=()
if [ "$POSTGRES" = 1 ]; then
    pg -c 'select 1' >/dev/null || { echo "e2e.sh --postgres: PostgreSQL at $PGURL not reachable" >&2; exit 2; }
    DB_KIND=postgres
    for n in 1 "$REPLICAS"; do
        SERVICE_COUNT=$n
        start_service "b-pg$n"
        sim "b-pg$n" --hit-ratio 0.01 --count "$COUNT" --duplicate-ratio 0.001 --malformed-ratio 0.001 --outside-ratio 0.02 --seed "$((20 + n))"
        stop_service
        start_service "d-pg$n" --max-batch 2000
        sim "d-pg$n" --unique-hits --hit-ratio 1 --fuzzy-ratio 0 --targets "$UNIQUE" --count "$UNIQUE" --seed "$((30 + n))" --window "${WINDOW:-5000}" --threads 1
        stop_service
        PG_RUNS+=("$n")
    done
    DB_KIND=sqlite; SERVICE_COUNT=1
fi

# (e) PostGIS baseline.
PG_NOTE=""
PG_LOOP_US=""; PG_QUERY_US=""
if [ "$SCALE" = 0 ]; then
    PG_NOTE="skipped (--skip-scale)"
elif ! pg -c 'select 1' >/dev/null 2>&1; then
    PG_NOTE="skipped: PostgreSQL at $PGURL not reachable"
else
    if ! pg -c 'CREATE EXTENSION IF NOT EXISTS postgis' >/dev/null 2>&1; then
        MAJOR=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1}')
        echo "== installing PostGIS for PostgreSQL ${MAJOR:-15}"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-${MAJOR:-15}-postgis-3") \
            >"$WORK/postgis-install.log" 2>&1 || true
    fi
    if ! pg -c 'CREATE EXTENSION IF NOT EXISTS postgis' >/dev/null 2>&1; then
        PG_NOTE="skipped: PostGIS could not be installed (see $WORK/postgis-install.log)"
    else
        cargo bench --quiet --bench scale -- postgis-sql "$WORK/pg" >"$WORK/pg.txt" 2>/dev/null
        pg -f "$WORK/pg/load.sql" >/dev/null 2>&1
        # In-server: 4096 lookups in one statement, no client round trips; best of 5.
        Q='EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT count(a.court_id) FROM lr_bench_points p LEFT JOIN LATERAL (SELECT court_id FROM lr_bench_areas a WHERE ST_Contains(a.geom, p.geom) LIMIT 1) a ON true'
        best=""
        for _ in 1 2 3 4 5 6; do
            ms=$(pg -c "$Q" | awk '/Execution Time/{print $3}')
            if [ -z "$best" ] || [ "$(echo "$ms < $best" | bc)" = 1 ]; then best=$ms; fi
        done
        PG_LOOP_US=$(echo "scale=2; $best * 1000 / 4096" | bc)
        # One prepared query per point from a client (pgbench), 5 s.
        printf '\\set i random(0, 4095)\nSELECT a.court_id FROM lr_bench_points p JOIN lr_bench_areas a ON ST_Contains(a.geom, p.geom) WHERE p.id = :i;\n' >"$WORK/pg/pgbench.sql"
        tps=$(pgbench -n -M prepared -c 1 -T 5 -f "$WORK/pg/pgbench.sql" "$PGURL" 2>/dev/null | awk '/^tps/{print $3}')
        PG_QUERY_US=$(echo "scale=2; 1000000 / $tps" | bc)
    fi
fi

# (f) scale, one process per measurement (peak memory is per process).
if [ "$SCALE" = 1 ]; then
for n in 1000 100000 10000000; do
    cargo bench --quiet --bench scale -- hotlist "$n" 2>/dev/null | tee "$WORK/hotlist-$n.txt"
done
# The three sizes timed in turns in one process: ratios that do not depend on how fast the
# machine happened to be during each size's own run.
cargo bench --quiet --bench scale -- hotlist-curve 2>/dev/null | grep ratio_1e7_1e3 | tee "$WORK/hotlist-curve.txt"
cargo bench --quiet --bench scale -- national 2>/dev/null | tee "$WORK/national.txt"
# What a lone read at 10⁷ waits for besides the cache: loads whose pages miss the TLB.
cargo bench --quiet --bench scale -- tlb 2>/dev/null | tee "$WORK/tlb.txt"
fi
kv() { tr ' ' '\n' <"$WORK/$1.txt" | awk -F= -v k="$2" '$1==k{print $2}'; }

CRIT_NINGBO=""
if [ "$CRITERION" = 1 ]; then
    echo "== cargo bench --bench locate"
    cargo bench --quiet --bench locate -- 'locate/ningbo/grid_points_on_land' >"$WORK/criterion-locate.txt" 2>&1 || true
    # "time:   [low unit MEDIAN unit high unit]"
    CRIT_NINGBO=$(sed -n 's/.*time: *\[[^ ]* [^ ]* \([0-9.]*\) \([^ ]*\).*/\1 \2/p' "$WORK/criterion-locate.txt" |
        head -1 | awk '{v=$1; if ($2=="µs"||$2=="us") v*=1000; print v}')
fi
LOCATE_NS=""
[ "$SCALE" = 1 ] && LOCATE_NS=${CRIT_NINGBO:-$(kv national locate_ningbo_ns)}

# The table.
# bc -l: without it bc divides in integers, and 35.7 / 22.6 <= 1.5 would hold.
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
verdict() { [ "$(echo "$1" | bc -l)" = 1 ] && echo met || echo MISSED; }
TA=$(j a '.throughput|floor'); TA0=$(j a0 '.publish_rate|floor')
RB=$(ratio "$TB" "$TA")
BAD_B=$(j b '.tasks.missing + .tasks.duplicated + .tasks.unexpected')
BAD_C=$(j c '.tasks.missing + .tasks.duplicated + .tasks.unexpected + .updates.missing + .updates.duplicated + .dead_letters.missing')
P99_C=$(j c '.latency.p99_ms*100|floor/100')
# What limits (c)'s tail: the group commits that took long (each delays every task behind
# it; a commit waits for the disk's fsync), and the mean from handing a message to the
# publisher to the broker's PUBACK (how long a publish takes to settle on the loaded cores).
slow_commits() { # metrics file → one line for (c)'s row
    awk '
        /^leadrelay_stage_seconds_bucket\{stage="persist",le="/ {
            split($1, q, "\""); le = q[4]; n = $2 + 0
            if (le == "+Inf") { total = n } else { k++; les[k] = le; cnt[k] = n }
        }
        /^leadrelay_stage_seconds_(sum|count)\{stage="publish"\}/ {
            if ($1 ~ /_sum/) psum = $2; else pcount = $2
        }
        END {
            if (total == 0) { print "no group commit recorded"; exit }
            for (i = 1; i <= k; i++) {
                if (les[i] + 0 == 0.02) under = cnt[i]
                if (slowest == "" && cnt[i] == total) slowest = les[i] * 1000
            }
            printf "group commits over 20 ms: %d of %d", total - under, total
            if (slowest != "") printf " (the slowest ≤ %g ms)", slowest
            if (pcount > 0) printf "; publish→PUBACK mean %.1f ms", psum / pcount * 1000
            printf "\n"
        }' "$1"
}
SLOW_C=$(slow_commits "$WORK/c.metrics")
# Cores each process kept busy over (c): on two cores the three share, waits for a core
# are in every hop's latency.
cores_busy() { # run file-suffix → cores, or "?"
    [ -s "$WORK/$1.$2" ] || { echo "?"; return; }
    printf '%.2f' "$(echo "$(cat "$WORK/$1.$2") / $(j "$1" '.e2e_secs')" | bc -l)"
}
BUSY_C="service $(cores_busy c cpu), broker $(cores_busy c broker-cpu), generator $(cores_busy c gen-cpu) of $(nproc) cores"
TD=$(j d 'if .e2e_secs > 0 then (.tasks.received / .e2e_secs)|floor else 0 end')
# The service's CPU per task over the whole (d) run, the HTTP import of its targets included:
# steadier than tasks/s on a machine whose speed varies, for comparing builds.
CPU_D=$(cat "$WORK/d.cpu" 2>/dev/null || echo 0)
# CPU per task of each process, in (d) and in the relay run: the service (over the run, and
# once its targets were loaded), the dedicated broker (not measured with --embedded or
# --system-mosquitto) and the generator (HTTP import of the targets included; in the relay
# run, the stand-in too).
per_task_us() { # run file-suffix count → µs per task of that process, or "?"
    [ -s "$WORK/$1.$2" ] || { echo "?"; return; }
    echo "scale=0; $(cat "$WORK/$1.$2") * 1000000 / $3" | bc -l
}
TASKS_D=$(j d '[.tasks.received, 1] | max'); TASKS_R=$(j r '[.sent, 1] | max')
CPU_D_US=$(per_task_us d cpu "$TASKS_D")
BROKER_D_US=$(per_task_us d broker-cpu "$TASKS_D"); GEN_D_US=$(per_task_us d gen-cpu "$TASKS_D")
BROKER_R_US=$(per_task_us r broker-cpu "$TASKS_R"); GEN_R_US=$(per_task_us r gen-cpu "$TASKS_R")
SVC_D_US=$(per_task_us d cpu-dispatch "$TASKS_D")
cores_at_20k() { # µs per task... → cores needed at 20,000 tasks/s
    local sum=0
    for us in "$@"; do [ "$us" = "?" ] && { echo "?"; return; }; sum=$((sum + us)); done
    printf '%.2f' "$(echo "$sum * 20000 / 1000000" | bc -l)"
}
BAD_D=$(j d '.tasks.missing + .tasks.duplicated + .tasks.unexpected')
if [ "$SCALE" = 1 ]; then
H3=$(kv hotlist-1000 exact_hit_ns); H7=$(kv hotlist-10000000 exact_hit_ns)
U3=$(kv hotlist-1000 unflagged_ns); U7=$(kv hotlist-10000000 unflagged_ns)
M7=$(kv hotlist-10000000 vm_hwm_mib)
fi
# (b) and (d) on PostgreSQL with n replicas, as rows of the table.
pg_rows() { # n
    local n=$1 b="b-pg$1" d="d-pg$1" replicas tb bad_b td bad_d tasks commits target verdict_d
    replicas="1 replica"; [ "$n" = 1 ] || replicas="$n replicas (--share-group)"
    tb=$(j "$b" '.throughput|floor')
    bad_b=$(j "$b" '.tasks.missing + .tasks.duplicated + .tasks.unexpected')
    echo "| b | leadrelay on PostgreSQL, $replicas, 1% hits, max rate (handled/s) | $tb msg/s; lost at broker $(j "$b" .lost_before_service); tasks bad $bad_b | $TA msg/s | $(ratio "$tb" "$TA") | ≥ 0.8 | $(verdict "$tb / $TA >= 0.8 && $bad_b == 0") |"
    td=$(j "$d" 'if .e2e_secs > 0 then (.tasks.received / .e2e_secs)|floor else 0 end')
    bad_d=$(j "$d" '.tasks.missing + .tasks.duplicated + .tasks.unexpected')
    tasks=$(j "$d" '[.tasks.received, 1] | max')
    commits=$(cat "$WORK/$d.commits-at-load-diff" 2>/dev/null || echo 0)
    target="0 lost"; verdict_d=$(verdict "$bad_d == 0")
    if [ "$n" = 1 ]; then target="≥ 15,000, 0 lost"; verdict_d=$(verdict "$td >= 15000 && $bad_d == 0"); fi
    echo "| d | 100% unique hits on PostgreSQL, $replicas: durable tasks/s (as d above) | $td tasks/s ($(j "$d" .tasks.received) of $(j "$d" .tasks.expected)); missing/dup $bad_d; CPU per task once the targets were loaded: service $(per_task_us "$d" cpu-dispatch "$tasks") µs, PostgreSQL $(per_task_us "$d" pg-cpu-at-load "$tasks") µs, broker $(per_task_us "$d" broker-cpu "$tasks") µs, generator $(per_task_us "$d" gen-cpu "$tasks") µs (with the HTTP import); $commits commits on its database, $(ratio "$tasks" "$([ "$commits" -gt 0 ] && echo "$commits" || echo 1)") tasks each | relay $TR/s; SQLite (d) $TD/s | $(ratio "$td" "$TR") of the relay, $(ratio "$td" "$TD") of SQLite | $target | $verdict_d |"
}
{
echo "| # | what | figure | baseline (same run) | ratio | target | verdict |"
echo "|---|---|---|---|---|---|---|"
echo "| a | raw broker: publisher → $BROKER → subscriber | $TA msg/s | publisher alone: $TA0 msg/s | $(ratio "$TA" "$TA0") | | |"
echo "| b | leadrelay, 1% hits, max rate (handled/s) | $TB msg/s; lost at broker $(j b .lost_before_service); tasks bad $BAD_B | $TA msg/s | $RB | ≥ 0.8 | $(verdict "$RB >= 0.8") |"
echo "| c | leadrelay at $HALF msg/s: p99 publish→task | $P99_C ms (p50 $(j c '.latency.p50_ms*100|floor/100'), max $(j c '.latency.max_ms*100|floor/100')); missing/dup $BAD_C; $SLOW_C; busy: $BUSY_C | | | ≤ 20 ms, 0 | $(verdict "$P99_C <= 20 && $BAD_C == 0") |"
# The ceiling for (d): the relay stand-in, which does nothing but carry (d)'s traffic.
TR=$(j r '.throughput|floor')
echo "| d | 100% unique hits: durable tasks/s (closed loop, window ${WINDOW:-5000}, generator on one thread) | $TD tasks/s ($(j d .tasks.received) of $(j d .tasks.expected)); missing/dup $BAD_D; CPU per task: service ${CPU_D_US} µs (${CPU_D} s; ${SVC_D_US} µs once the targets were loaded), broker ${BROKER_D_US} µs, generator ${GEN_D_US} µs; at 20,000/s these three need $(cores_at_20k "$SVC_D_US" "$BROKER_D_US" "$GEN_D_US") of $(nproc) cores, broker + generator alone $(cores_at_20k "$BROKER_D_US" "$GEN_D_US") | relay doing no work in leadrelay's place, same broker and traffic: $TR/s (CPU per task: broker ${BROKER_R_US} µs, generator + stand-in ${GEN_R_US} µs); Tile38 ≈ 29,000/s (not durable) | $(ratio "$TD" "$TR") of the relay | ≥ 20,000, 0 lost | $(verdict "$TD >= 20000 && $BAD_D == 0") |"
for n in "${PG_RUNS[@]}"; do pg_rows "$n"; done
if [ "$SCALE" = 0 ]; then
echo "| e, f | PostGIS, hotlist and national scale | skipped (--skip-scale) | | | | not measured |"
else
if [ -n "$PG_LOOP_US" ]; then
echo "| e | locate, Ningbo, on land | $LOCATE_NS ns | PostGIS ST_Contains in-server loop $PG_LOOP_US µs; per prepared query (pgbench) $PG_QUERY_US µs | $(ratio "$PG_LOOP_US * 1000" "$LOCATE_NS")× / $(ratio "$PG_QUERY_US * 1000" "$LOCATE_NS")× | ≥ 100× | $(verdict "$PG_LOOP_US * 1000 / $LOCATE_NS >= 100") |"
else
echo "| e | PostGIS baseline | $PG_NOTE | | | ≥ 100× | not measured |"
fi
TLB="a dependent load whose 4 KiB page is not in the TLB: +$(kv tlb page_walk_ns) ns (4096 lines on 256 pages $(kv tlb few_pages_ns) ns, on 4096 pages $(kv tlb own_page_ns) ns, over 256 MiB $(kv tlb spread_ns) ns; $(kv tlb anon_huge_mib) MiB on huge pages)"
echo "| f | hotlist exact hit 10³ / 10⁵ / 10⁷ | $H3 / $(kv hotlist-100000 exact_hit_ns) / $H7 ns; $TLB; a hit at 10⁷ makes two such loads, one after the other | 10³ | $(ratio "$H7" "$H3") | ≤ 1.5 | $(verdict "$H7 / $H3 <= 1.5") |"
B3=$(kv hotlist-1000 batch_exact_hit_ns); B7=$(kv hotlist-10000000 batch_exact_hit_ns)
BCURVE=$(kv hotlist-curve batch_exact_hit)
echo "| f | hotlist exact hit, batched as the pipeline reads (per read) 10³ / 10⁵ / 10⁷ | $B3 / $(kv hotlist-100000 batch_exact_hit_ns) / $B7 ns; sizes timed in turns in one process: 10⁷/10³ = $BCURVE | 10³ | $(ratio "$B7" "$B3") / $BCURVE | ≤ 1.5 | $(verdict "$BCURVE <= 1.5") |"
echo "| f | hotlist unflagged 10³ / 10⁵ / 10⁷ | $U3 / $(kv hotlist-100000 unflagged_ns) / $U7 ns | 10³ | $(ratio "$U7" "$U3") | ≤ 1.5 | $(verdict "$U7 / $U3 <= 1.5") |"
echo "| f | hotlist build 10³ / 10⁵ / 10⁷ | $(kv hotlist-1000 build_s) / $(kv hotlist-100000 build_s) / $(kv hotlist-10000000 build_s) s; VmHWM $(kv hotlist-1000 vm_hwm_mib) / $(kv hotlist-100000 vm_hwm_mib) / $M7 MiB | | | < 2 GB at 10⁷ | $(verdict "$M7 < 2048") |"
if grep -q skipped "$WORK/national.txt"; then
echo "| f | national county set | $(cat "$WORK/national.txt") | | | ≤ 2× | not measured |"
else
echo "| f | locate, $(kv national areas) counties + 10⁷ hotlist | $(kv national locate_china_ns) ns; load $(kv national load_s) s; VmHWM $(kv national vm_hwm_mib) MiB | Ningbo $(kv national locate_ningbo_ns) ns | $(kv national ratio) | ≤ 2× | $(verdict "$(kv national ratio) <= 2") |"
fi
fi
} >"$WORK/table.md"
echo
echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo) (family $(awk -F': ' '/cpu family/{print $2; exit}' /proc/cpuinfo), model $(awk -F': ' '/^model\t/{print $2; exit}' /proc/cpuinfo), L2 $(lscpu | awk -F': *' '/L2 cache/{print $2}')); broker: $BROKER; sent per run: $COUNT (d: $UNIQUE)"
cat "$WORK/table.md"
