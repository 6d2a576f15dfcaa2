#!/usr/bin/env bash
# Baseline for the benchmarks (issue 13): the indexed shell handler careful operators write. It
# remembers the highest ModifyIndex it has applied (STATE_FILE) and PUTs only the `.json` entries
# whose ModifyIndex is above it, one curl each: no live read and no diff, so drift in Marathon is
# never repaired, and a lost state file (or a Consul restore, which lowers indexes) means
# re-PUTting everything or skipping new changes.
set -euo pipefail
: "${MARATHON_URL:?set MARATHON_URL}"
: "${STATE_FILE:?set STATE_FILE}"
last=$(cat "$STATE_FILE" 2>/dev/null || echo 0)
# One jq over the payload: first line the highest index in it, then the entries to apply as
# "id<TAB>json" lines.
jq -r --argjson last "$last" '
  [if type == "array" then .[] elif type == "object" then . else empty end] as $e
  | ($e | map(.ModifyIndex) | max // 0),
    ($e[] | select(.ModifyIndex > $last) | select(.Key | endswith(".json"))
      | select(.Value != null) | .Value | @base64d | fromjson | select(.id != null)
      | "\(.id)\t\(tojson)")' |
{
  read -r max
  while IFS=$'\t' read -r id body; do
    curl -fsS -X PUT -H 'Content-Type: application/json' --data-binary "$body" \
      "$MARATHON_URL/v2/apps/${id#/}?force=true" >/dev/null
  done
  if [ "$max" -gt "$last" ]; then
    printf '%s\n' "$max" >"$STATE_FILE.tmp" && mv "$STATE_FILE.tmp" "$STATE_FILE"
  fi
}
