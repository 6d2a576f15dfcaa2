#!/usr/bin/env python3
"""Baseline for the benchmarks: a Consul keyprefix watch handler as operators write it today in
Python (stdlib only, as python-consul users do): decode every entry, PUT every app to Marathon."""
import base64
import json
import os
import sys
import urllib.request

marathon = os.environ["MARATHON_URL"].rstrip("/")
payload = json.load(sys.stdin) or []
if isinstance(payload, dict):  # a `key` watch delivers one entry, a `keyprefix` watch a list
    payload = [payload]
for entry in payload:
    if not entry["Key"].endswith(".json") or entry.get("Value") is None:
        continue
    body = base64.b64decode(entry["Value"])
    app = json.loads(body)
    if "id" not in app:
        continue
    req = urllib.request.Request(
        f"{marathon}/v2/apps/{app['id'].lstrip('/')}?force=true",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30).read()
