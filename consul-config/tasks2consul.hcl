# tasks2consul: after kv2jobs fires "shipwatch-deployed", register the running Marathon tasks as
# Consul services and deregister the dead ones (consul-template then refreshes HAProxy).
watches = [
  {
    # The first run after an agent start/reload receives the agent's whole event buffer; every
    # run does a full sync (scoped to the apps the events name), so replays are harmless.
    type         = "event"
    name         = "shipwatch-deployed"
    handler_type = "script"
    # With ACLs on: a token that can read events and write the services/nodes it registers.
    token = "REPLACE-WITH-WATCH-TOKEN"
    args = [
      "tasks2consul",
      # Register on an external node per Mesos host (no agent needed on dead hosts).
      "--mode", "catalog",
      # Only apps labelled "consul" are registered; the label value names the service.
      "--label", "consul",
      "--lock", "shipwatch/locks/tasks2consul",
      "--timeout", "5m",
    ]
  }
]
