//! Running external tools (blkid, mkfs, dmsetup ...) behind a small trait so
//! callers can be tested without executing anything.

use std::fmt;
use std::process::Command;

use crate::error::{NodeError, Result};

/// A program and its arguments, built by pure functions and run by a
/// [`CommandRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Program name, looked up in `PATH`.
    pub program: String,
    /// Arguments, passed verbatim (no shell).
    pub args: Vec<String>,
}

impl CommandLine {
    /// Creates a command line from a program and its arguments.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandLine {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                write!(f, " {arg:?}")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// What a finished program reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit code; `None` when the program was killed by a signal.
    pub status: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// True when the program exited with code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Turns a non-zero exit into [`NodeError::CommandFailed`].
    pub fn check(self, cmd: &CommandLine) -> Result<CommandOutput> {
        if self.success() {
            Ok(self)
        } else {
            Err(self.into_error(cmd))
        }
    }

    /// Builds the [`NodeError::CommandFailed`] describing this output.
    pub fn into_error(self, cmd: &CommandLine) -> NodeError {
        NodeError::CommandFailed {
            command: cmd.to_string(),
            status: self.status,
            stderr: self.stderr.trim().to_owned(),
        }
    }
}

/// Executes command lines. Blocking: call from `spawn_blocking` in async code.
pub trait CommandRunner: Send + Sync {
    /// Runs `cmd` to completion and returns its output whatever its exit code.
    fn run(&self, cmd: &CommandLine) -> Result<CommandOutput>;
}

/// Runs commands on the host with [`std::process::Command`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, cmd: &CommandLine) -> Result<CommandOutput> {
        tracing::debug!(command = %cmd, "running");
        let out = Command::new(&cmd.program)
            .args(&cmd.args)
            .output()
            .map_err(|source| NodeError::CommandSpawn {
                program: cmd.program.clone(),
                source,
            })?;
        Ok(CommandOutput {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted runner recording what would have been executed.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Records command lines and answers with scripted outputs.
    #[derive(Default)]
    pub struct ScriptedRunner {
        pub calls: Mutex<Vec<CommandLine>>,
        pub answers: Mutex<VecDeque<CommandOutput>>,
    }

    impl ScriptedRunner {
        pub fn answering(answers: Vec<CommandOutput>) -> Self {
            ScriptedRunner {
                calls: Mutex::new(Vec::new()),
                answers: Mutex::new(answers.into()),
            }
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        }
    }

    pub fn exit(code: i32, stdout: &str) -> CommandOutput {
        CommandOutput {
            status: Some(code),
            stdout: stdout.to_owned(),
            stderr: String::new(),
        }
    }

    impl CommandRunner for ScriptedRunner {
        fn run(&self, cmd: &CommandLine) -> Result<CommandOutput> {
            self.calls.lock().unwrap().push(cmd.clone());
            Ok(self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| exit(0, "")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let cmd = CommandLine::new("dmsetup", ["create", "x", "--table", "0 8 linear /dev/a 0"]);
        assert_eq!(
            cmd.to_string(),
            "dmsetup create x --table \"0 8 linear /dev/a 0\""
        );
    }

    #[test]
    fn failed_exit_becomes_command_failed_with_stderr() {
        let cmd = CommandLine::new("false", Vec::<String>::new());
        let out = CommandOutput {
            status: Some(3),
            stdout: String::new(),
            stderr: "  boom\n".into(),
        };
        match out.check(&cmd) {
            Err(NodeError::CommandFailed { status, stderr, .. }) => {
                assert_eq!(status, Some(3));
                assert_eq!(stderr, "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn system_runner_reports_exit_code_and_output() {
        let out = SystemRunner
            .run(&CommandLine::new("sh", ["-c", "echo hi; exit 2"]))
            .unwrap();
        assert_eq!(out.status, Some(2));
        assert_eq!(out.stdout, "hi\n");
    }
}
