#!/usr/bin/env bash
# Make sure the RabbitMQ the tests use answers on 127.0.0.1:5672; start it if it can be.
set -u
port_open() { (echo > /dev/tcp/127.0.0.1/5672) >/dev/null 2>&1; }
if port_open; then echo "RabbitMQ is up on 127.0.0.1:5672"; exit 0; fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed:" >&2
  echo "install it (apt-get install rabbitmq-server) or start one there (guest/guest)" >&2
  exit 1
fi
echo "starting RabbitMQ (rabbitmq-server -detached)"
rabbitmq-server -detached || true
for _ in $(seq 1 120); do
  if port_open; then echo "RabbitMQ is up"; exit 0; fi
  sleep 1
done
echo "RabbitMQ did not come up on 127.0.0.1:5672 within 120 s" >&2
exit 1
