#!/usr/bin/env bash
# Install everything the tests need, check lint, types and the docs, and run every test.
#   bash scripts/test.sh            # the whole suite
#   bash scripts/test.sh -k pubsub  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages (redis-server and redis-sentinel for cluster tests, chromium for browser
# tests, node for the JS client, PostgreSQL's server binaries: tests/support/postgres.py
# starts its own server on a free port, whatever the machine runs).
need=()
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)  # docs' nginx blocks run for real
# tests/testbed: hosts as network namespaces (ip netns, as root), each with its own host name (unshare)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

# snorky.js's node tests need a WebSocket: Node 22+ has one, Node 20 behind a
# flag; older Nodes (Debian's 18) get the `ws` package from the npm registry.
if ! node -e "process.exit(typeof WebSocket === 'function' ? 0 : 1)" 2>/dev/null &&
   ! node --experimental-websocket -e "process.exit(typeof WebSocket === 'function' ? 0 : 1)" 2>/dev/null; then
  npm install --silent --no-audit --no-fund --prefix tests/js
fi

# sockjs-client (1.x) for the SockJS browser tests, from the npm registry.
[ -f tests/sockjs/node_modules/sockjs-client/dist/sockjs.min.js ] ||
  npm install --silent --no-audit --no-fund --prefix tests/sockjs

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,redis,docs,lint]"

# Lint, types and the docs first (seconds; docs/development.md): any failure stops here.
.venv/bin/ruff check snorky_sync bench tests/docs docs/_ext
.venv/bin/mypy
.venv/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# Everything the tests need is installed above: a test that skips fails (tests/conftest.py;
# SNORKY_NO_SKIPS=0 bash scripts/test.sh lets them skip).
export SNORKY_NO_SKIPS="${SNORKY_NO_SKIPS:-1}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # the slow-consumer test opens 1,000+ sockets
# Test files in parallel (pytest-xdist), each file whole on one worker (its
# module-scoped servers start once): most of a test's time is waiting on servers.
# SNORKY_TEST_WORKERS=0 runs them in this process, one after another.
exec .venv/bin/python -m pytest -n "${SNORKY_TEST_WORKERS:-2}" --dist loadfile "$@"
