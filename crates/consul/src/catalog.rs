//! Catalog: register/deregister on (external) nodes, list services and nodes.
