//! consul (skeleton)
