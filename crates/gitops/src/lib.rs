//! gitops (skeleton)
