//! The Marathon double (apps, deployments, tasks, events, leader proxy, auth).
