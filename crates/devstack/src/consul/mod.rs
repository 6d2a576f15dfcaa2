//! The Consul double (KV, blocking queries, sessions, catalog, health, agent, events, ACLs).
