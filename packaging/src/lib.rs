//! shipwatch (packaging): the Debian package definition of the shipwatch handlers, read by
//! `cargo deb` from this crate's `Cargo.toml` (`[package.metadata.deb]`).
//!
//! For: the package's contents (binaries, man pages, completions, consul-config examples, the
//! environment file, the consul.service drop-in). Not for: any code; `packaging/build-deb` builds
//! the binaries and generates the man pages and completions from their clap definitions first.
