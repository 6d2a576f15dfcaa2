# tag2git: CI writes images/<repository> = <image reference or tag>; this watch commits the new
# image into the Marathon/Chronos job files in Git and pushes.
watches = [
  {
    # keyprefix delivers the whole subtree on any change (and on every agent start/reload);
    # tag2git skips entries whose key, ModifyIndex and value are already in the Git
    # history (commit trailers).
    type   = "keyprefix"
    prefix = "images/"
    # "script" runs args directly, without a shell (the deprecated "handler" field would use sh).
    handler_type = "script"
    # Watches in agent config do NOT use the agent's token (consul #3470): with ACLs on (default
    # deny), uncomment and set a token that can read images/ (key_prefix "images/" { policy =
    # "read" }). Without ACLs, leave it commented out: a placeholder token makes the watch fail.
    # token = "REPLACE-WITH-WATCH-TOKEN"
    # An absolute path: the agent looks a bare name up on its own PATH (systemd's has no ~/.cargo/bin).
    args = [
      "/usr/local/bin/tag2git",
      "--repo", "ssh://git@git.example.com/ops/jobs.git",
      "--branch", "main",
      "--key-prefix", "images/",
      # A persistent clone: later runs only fetch.
      "--workdir", "/var/lib/shipwatch/tag2git",
      "--author", "tag2git <tag2git@example.com>",
      # When several agents run this watch, one acts and the others exit 0.
      "--lock", "shipwatch/locks/tag2git",
      # The agent never kills a hung handler: bound the run.
      "--timeout", "5m",
    ]
  }
]
