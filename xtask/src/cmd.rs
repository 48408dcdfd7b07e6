//! Running external commands: echo the command line, stream its output, turn a failure into
//! an [`Error`] that says which command failed and how.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// An xtask failure, carrying a message meant for a human.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    /// An error with the given message.
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Result type of every xtask step.
pub(crate) type Result<T = ()> = std::result::Result<T, Error>;

/// A `cargo` command run from the workspace root.
///
/// Uses the `CARGO` environment variable (set by `cargo run`, so the same toolchain that
/// built xtask runs the steps) and falls back to `cargo` on `PATH`.
pub(crate) fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root);
    cmd
}

/// Renders a command line for display: explicitly set environment variables first (except
/// the `CADENCE_*` service variables, printed once when the services start), then the
/// program and its arguments, quoted where needed.
pub(crate) fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        if key.starts_with("CADENCE_") {
            continue;
        }
        if let Some(value) = value {
            parts.push(format!("{key}={}", quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// Quotes one shell word if it holds anything but plainly safe characters.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to completion with inherited stdin/stdout/stderr (output streams as it comes).
///
/// Fails if the program cannot be started or exits unsuccessfully; the error names the
/// command line and the exit status.
pub(crate) fn run(cmd: &mut Command) -> Result {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .map_err(|e| Error::new(format!("could not start `{line}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!("`{line}` failed ({status})")))
    }
}

/// Like [`run`], but pipes the command's stderr through us (still streamed, line by line)
/// and also returns whether `needle` appeared in it, so that a caller can recognise one
/// particular failure.
///
/// When our stderr is a terminal and `CARGO_TERM_COLOR` is unset, sets it to `always` so
/// that cargo keeps its colours despite the pipe.
pub(crate) fn run_watching_stderr(cmd: &mut Command, needle: &str) -> (Result, bool) {
    let line = display(cmd);
    eprintln!("$ {line}");
    if io::stderr().is_terminal() && std::env::var_os("CARGO_TERM_COLOR").is_none() {
        cmd.env("CARGO_TERM_COLOR", "always");
    }
    let mut child = match cmd.stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => {
            return (
                Err(Error::new(format!("could not start `{line}`: {e}"))),
                false,
            );
        }
    };
    let mut seen = false;
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            seen |= String::from_utf8_lossy(&buf).contains(needle);
            let _ = io::stderr().write_all(&buf);
            buf.clear();
        }
    }
    let result = match child.wait() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Error::new(format!("`{line}` failed ({status})"))),
        Err(e) => Err(Error::new(format!("could not wait for `{line}`: {e}"))),
    };
    (result, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_hides_service_vars() {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--save", "", "it's"])
            .env("RUSTDOCFLAGS", "-Dwarnings")
            .env("CADENCE_REDIS_URL", "redis://x/");
        assert_eq!(
            display(&cmd),
            r"RUSTDOCFLAGS=-Dwarnings redis-server --save '' 'it'\''s'"
        );
    }

    #[test]
    fn run_reports_failure_and_missing_program() {
        assert!(run(&mut Command::new("true")).is_ok());
        let err = run(&mut Command::new("false")).unwrap_err().to_string();
        assert!(err.contains("`false` failed"), "{err}");
        let err = run(&mut Command::new("/nonexistent/xtask-no-such-program"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("could not start"), "{err}");
    }

    #[test]
    fn watching_stderr_sees_the_needle() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo one >&2; echo 'error: no lib here' >&2; exit 101",
        ]);
        let (result, seen) = run_watching_stderr(&mut cmd, "no lib");
        assert!(result.is_err());
        assert!(seen);
        let (result, seen) = run_watching_stderr(&mut Command::new("true"), "no lib");
        assert!(result.is_ok());
        assert!(!seen);
    }
}
