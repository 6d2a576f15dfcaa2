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
    # With ACLs on: a token that can read jobs/ and write the lock key and events.
    token = "REPLACE-WITH-WATCH-TOKEN"
    # Marathon/Chronos URLs and credentials come from the agent's environment
    # (MARATHON_URL, MARATHON_USERNAME, MARATHON_PASSWORD, CHRONOS_URL): see README.md.
    args = [
      "kv2jobs",
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
