//! Agent: local service registration (agent mode).
