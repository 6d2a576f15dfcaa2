# tasks2consul: after kv2jobs fires "shipwatch-deployed", register the running Marathon tasks as
# Consul services and deregister the dead ones (consul-template then refreshes HAProxy).
watches = [
  {
    # The first run after an agent start/reload receives the agent's whole event buffer; every
    # run does a full sync (scoped to the apps the events name), so replays are harmless.
    type         = "event"
    name         = "shipwatch-deployed"
    handler_type = "script"
    # With ACLs on (default deny), uncomment and set a token that can read the events (watches in
    # agent config do NOT use the agent's token, consul #3470). Without ACLs, leave it commented
    # out: a placeholder token makes the watch fail. tasks2consul's own writes (services, nodes)
    # use CONSUL_HTTP_TOKEN_FILE from the agent's environment (README.md).
    # token = "REPLACE-WITH-WATCH-TOKEN"
    # An absolute path: the agent looks a bare name up on its own PATH (systemd's has no ~/.cargo/bin).
    args = [
      "/usr/local/bin/tasks2consul",
      # Register on an external node per Mesos host (no agent needed on dead hosts).
      "--mode", "catalog",
      # Only apps labelled "consul" are registered; the label value names the service.
      "--label", "consul",
      "--lock", "shipwatch/locks/tasks2consul",
      "--timeout", "5m",
    ]
  }
]
