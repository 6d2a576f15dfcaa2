//! The watch runner: runs script handlers from a Consul agent config exactly as the agent does.
