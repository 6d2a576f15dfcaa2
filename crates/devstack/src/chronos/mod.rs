//! The Chronos double (scheduler jobs, iso8601, dependency, run, delete).
