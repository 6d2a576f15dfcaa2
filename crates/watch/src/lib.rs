//! watch (skeleton)
