//! marathon (skeleton)
