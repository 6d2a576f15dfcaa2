//! Known bugs found by the reliability suite, as ignored failing tests.
