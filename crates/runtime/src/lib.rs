//! runtime (skeleton)
