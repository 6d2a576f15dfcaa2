//! Reading the payload. stdin is always read to EOF: the agent writes the payload into a pipe and
//! a handler that exits without draining it makes the agent log a broken pipe (consul #501).

use std::io::Read;
use std::path::Path;

use crate::exit::{Exit, ToExit};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read --input {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the payload from stdin: {0}")]
    Stdin(#[source] std::io::Error),
}

impl ToExit for InputError {
    fn exit(&self) -> Exit {
        match self {
            InputError::File { .. } => Exit::Usage,
            InputError::Stdin(_) => Exit::Software,
        }
    }
}

/// The payload from `--input PATH` (`-` = stdin) or stdin. When a file is named, stdin is still
/// drained (the agent may have written to it).
pub fn read_payload(input: Option<&Path>) -> Result<Vec<u8>, InputError> {
    match input {
        Some(p) if p != Path::new("-") => {
            drain_stdin_if_piped();
            std::fs::read(p).map_err(|source| InputError::File {
                path: p.display().to_string(),
                source,
            })
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(InputError::Stdin)?;
            Ok(buf)
        }
    }
}

/// Drains stdin when it is not a terminal (a person running `kv2jobs --input f.json` by hand
/// must not be left waiting for Ctrl-D).
fn drain_stdin_if_piped() {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let _ = std::io::copy(&mut stdin.lock(), &mut std::io::sink());
    }
}
