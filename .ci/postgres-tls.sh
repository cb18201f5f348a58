#!/usr/bin/env bash
# Gives the machine's PostgreSQL a TLS certificate for `localhost` from a CA made here, so
# tests can connect with sslmode=verify-full. Idempotent; prints the CA file's path.
set -euo pipefail
dir=/var/lib/postgresql/leadrelay-ci-tls
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -tAc "$1"; }

if [ ! -s "$dir/server.crt" ] || ! openssl x509 -checkend 86400 -noout -in "$dir/server.crt" >/dev/null; then
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=leadrelay CI CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
  chown -R postgres: "$dir" 2>/dev/null || true
  chmod 0600 "$dir/server.key" "$dir/ca.key"
  chmod 0644 "$dir/ca.crt" "$dir/server.crt"
fi

psql_admin "ALTER SYSTEM SET ssl_cert_file = '$dir/server.crt'" >/dev/null
psql_admin "ALTER SYSTEM SET ssl_key_file = '$dir/server.key'" >/dev/null
psql_admin "ALTER SYSTEM SET ssl = on" >/dev/null
psql_admin "SELECT pg_reload_conf()" >/dev/null
# The reload is asynchronous: wait until a verified TLS connection works.
for _ in $(seq 1 50); do
  if psql "postgres://postgres@localhost:5432/postgres?sslmode=verify-full&sslrootcert=$dir/ca.crt" \
      -tAc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>/dev/null | grep -q t; then
    echo "$dir/ca.crt"
    exit 0
  fi
  sleep 0.2
done
echo "PostgreSQL did not accept a verified TLS connection" >&2
exit 1
