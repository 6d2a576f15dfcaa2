#!/usr/bin/env python3
"""Baseline for the benchmarks: a Consul watch handler that registers Marathon tasks in the
Consul catalog as operators write it today in Python (stdlib only): on any delivery, read every
labelled app with its tasks and PUT one catalog registration per running task port. Like most
such scripts it never deregisters, so replaced tasks stay registered (stale)."""
import json
import os
import sys
import urllib.request

marathon = os.environ["MARATHON_URL"].rstrip("/")
consul = os.environ.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500").rstrip("/")
if not consul.startswith("http"):
    consul = "http://" + consul

sys.stdin.read()  # the watch payload only says "something changed"
with urllib.request.urlopen(f"{marathon}/v2/apps?embed=apps.tasks&label=consul", timeout=30) as r:
    apps = json.load(r)["apps"]

for app in apps:
    labels = app.get("labels") or {}
    name = labels.get("consul") or "true"
    if name == "true":
        name = app["id"].strip("/").replace("/", "-")
    tags = sorted(k for k, v in labels.items() if v == "tag")
    for task in app.get("tasks", []):
        if task.get("state") != "TASK_RUNNING":
            continue
        for port in task.get("ports", []):
            body = {
                "Node": "marathon-" + task["host"],
                "Address": task["host"],
                "NodeMeta": {"external-node": "true", "external-probe": "true"},
                "Service": {
                    "ID": f"marathon:{task['id']}:{port}",
                    "Service": name,
                    "Address": task["host"],
                    "Port": port,
                    "Tags": tags,
                },
            }
            req = urllib.request.Request(
                f"{consul}/v1/catalog/register",
                data=json.dumps(body).encode(),
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(req, timeout=30).read()
