#!/usr/bin/env bash
# Baseline for the benchmarks: a Consul key/keyprefix watch handler as operators write it today
# with jq and curl. It decodes every entry and PUTs every app to Marathon, changed or not.
# (One jq for the whole payload with @base64d, one curl per app: the common per-entry
# `jq | base64 -d | jq` pipeline spawns four processes per app and is several times slower.)
set -euo pipefail
: "${MARATHON_URL:?set MARATHON_URL}"
# A `key` watch delivers one entry, a `keyprefix` watch a list (or null).
jq -r 'if type == "array" then .[] elif type == "object" then . else empty end
  | select(.Key | endswith(".json")) | select(.Value != null)
  | .Value | @base64d | fromjson | select(.id != null)
  | "\(.id)\t\(tojson)"' |
while IFS=$'\t' read -r id body; do
  curl -fsS -X PUT -H 'Content-Type: application/json' --data-binary "$body" \
    "$MARATHON_URL/v2/apps/${id#/}?force=true" >/dev/null
done
