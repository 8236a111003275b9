#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers on 127.0.0.1:5432 (trust auth, database
# `test`); start the Debian cluster if it is down.
set -u
port_open() { (echo > /dev/tcp/127.0.0.1/5432) >/dev/null 2>&1; }
if port_open; then echo "PostgreSQL is up on 127.0.0.1:5432"; exit 0; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
  echo "PostgreSQL is not running on 127.0.0.1:5432 and no Debian cluster is installed:" >&2
  echo "install it (apt-get install postgresql) or start one there (trust auth, database test)" >&2
  exit 1
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL $version (pg_ctlcluster $version main start)"
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 60); do
  if port_open; then echo "PostgreSQL is up"; exit 0; fi
  sleep 1
done
echo "PostgreSQL did not come up on 127.0.0.1:5432 within 60 s" >&2
exit 1
