//! Exit codes (sysexits.h), the one contract between a handler and whoever reads its status.

/// How a handler run ended. Documented in the README; scripts and tests rely on the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: done, or nothing to do.
    Success,
    /// 1: anything else (a bug, an unexpected local failure).
    Software,
    /// 64 (EX_USAGE): bad flags or configuration.
    Usage,
    /// 65 (EX_DATAERR): the payload (or part of it) is invalid; nothing was changed for it.
    DataErr,
    /// 69 (EX_UNAVAILABLE): a required remote stayed unreachable after retries; nothing was lost
    /// and replaying the payload is safe.
    Unavailable,
    /// 75 (EX_TEMPFAIL): partially applied; some actions failed; a replay completes the rest.
    TempFail,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Software => 1,
            Exit::Usage => 64,
            Exit::DataErr => 65,
            Exit::Unavailable => 69,
            Exit::TempFail => 75,
        }
    }

    /// Severity used to combine outcomes: a run reports the most severe one.
    /// Invalid input (65) ranks below remote failures, so "bad configs mixed with good ones" is 65
    /// only when nothing else failed.
    fn rank(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::DataErr => 1,
            Exit::TempFail => 2,
            Exit::Unavailable => 3,
            Exit::Usage => 4,
            Exit::Software => 5,
        }
    }

    /// The more severe of two outcomes.
    pub fn worst(self, other: Exit) -> Exit {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// Implemented by every handler error: the one place where an error becomes an exit code.
pub trait ToExit {
    fn exit(&self) -> Exit;
}

impl ToExit for watch::DecodeError {
    /// An undecodable payload is bad input: nothing was changed (65).
    fn exit(&self) -> Exit {
        Exit::DataErr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_prefers_remote_failures_over_bad_input() {
        assert_eq!(Exit::DataErr.worst(Exit::TempFail), Exit::TempFail);
        assert_eq!(Exit::TempFail.worst(Exit::DataErr), Exit::TempFail);
        assert_eq!(Exit::Success.worst(Exit::DataErr), Exit::DataErr);
        assert_eq!(Exit::Unavailable.worst(Exit::TempFail), Exit::Unavailable);
        assert_eq!(Exit::Unavailable.code(), 69);
    }
}
