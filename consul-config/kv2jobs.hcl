# kv2jobs: git2consul mirrors the jobs repository into KV as <repo>/<branch>/<path> (then writes
# <repo>/<branch>.ref last); this watch deploys what changed to Marathon and Chronos.
watches = [
  {
    type = "keyprefix"
    # The git2consul repository "jobs". The watch covers "jobs/" so that it also sees
    # "jobs/main.ref", which git2consul writes after all files of a commit: kv2jobs acts only on
    # consistent snapshots. --prefix selects the branch.
    prefix       = "jobs/"
    handler_type = "script"
    # With ACLs on (default deny), uncomment and set a token that can read jobs/: watches in agent
    # config do NOT use the agent's token (consul #3470). Without ACLs, leave it commented out: a
    # placeholder token makes the watch fail ("ACL not found"). The handler's own token (lock,
    # events) comes from CONSUL_HTTP_TOKEN_FILE in the agent's environment (README.md).
    # token = "REPLACE-WITH-WATCH-TOKEN"
    # Marathon/Chronos URLs and credentials come from the agent's environment
    # (MARATHON_URL, MARATHON_USERNAME, MARATHON_PASSWORD, CHRONOS_URL): see README.md.
    # An absolute path: the agent looks a bare name up on its own PATH (systemd's has no ~/.cargo/bin).
    args = [
      "/usr/local/bin/kv2jobs",
      "--prefix", "jobs/main/",
      # Delete managed apps/jobs whose config was removed from Git.
      "--prune",
      # Follow the deployments it starts and report failures (exit 75).
      "--wait",
      "--deploy-timeout", "10m",
      # Tell tasks2consul which apps changed.
      "--fire-event", "shipwatch-deployed",
      "--lock", "shipwatch/locks/kv2jobs",
      "--timeout", "15m",
    ]
  }
]
