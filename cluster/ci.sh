#!/usr/bin/env bash
# ci.sh: the cluster's suite against a real Redis and nginx. Under CI (CI=true) both
# are installed from Debian when missing and required; a local run without them
# lets the Go tests skip with a message saying how to install them.
#   gofmt and vet; the Go tests, then again with -race (about 20 s each);
#   the chat page in Chromium through nginx and three nodes (about 40 s; it needs
#   npm ci in e2e/ and Debian's chromium, which the root's CI installs).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ] && [ "${CI:-}" = true ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -count=1 ./...
go test -race -count=1 ./...

require=0
[ "${CI:-}" = true ] && require=1
(cd ../e2e && { [ -d node_modules ] || npm ci --no-audit --no-fund; } &&
  E2E_REQUIRE=$require node --test --test-reporter=spec cluster.test.js)
