//! The CLI's error: what went wrong, said in one line, and the exit code it maps to.

use std::fmt;
use std::io;

use llmux_core::{providers, ErrorKind};

/// Exit code for a failed command.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when the user cancelled with Ctrl-C (128 + SIGINT, as shells do).
pub const EXIT_CANCELLED: u8 = 130;

/// Everything a subcommand can fail with.
#[derive(Debug)]
pub enum CliError {
    /// The library said no: configuration, validation, the upstream.
    Core(Box<llmux_core::Error>),
    /// Reading or writing a file or the terminal failed.
    Io {
        /// What we were doing, as a phrase (`reading the prompt from stdin`).
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Anything else, already phrased for the user.
    Message(String),
    /// Ctrl-C stopped the answer.
    Cancelled,
}

/// The CLI's result alias.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error with a message of our own.
    pub fn msg(message: impl Into<String>) -> Self {
        CliError::Message(message.into())
    }

    /// An IO error with what we were doing when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Cancelled => EXIT_CANCELLED,
            _ => EXIT_FAILURE,
        }
    }

    /// True when stdout was closed under us (`llmux chat … | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<llmux_core::Error> for CliError {
    fn from(e: llmux_core::Error) -> Self {
        if e.kind() == ErrorKind::Cancelled {
            return CliError::Cancelled;
        }
        CliError::Core(Box::new(e))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Core(e) => f.write_str(&describe(e)),
            CliError::Io { context, source } => write!(f, "{context}: {source}"),
            CliError::Message(m) => f.write_str(m),
            CliError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Core(e) => Some(e.as_ref()),
            CliError::Io { source, .. } => Some(source),
            CliError::Message(_) | CliError::Cancelled => None,
        }
    }
}

/// One line for a library error: core's `provider: message (code, HTTP status)`, plus the
/// variable to check when a key was rejected. Core's messages are client-safe, so this never
/// shows a secret.
pub fn describe(e: &llmux_core::Error) -> String {
    let mut line = e.to_string();
    if e.kind() == ErrorKind::Authentication {
        if let Some(env) = e.provider().and_then(key_env) {
            line.push_str(&format!("; check {env}"));
        }
    }
    // Whatever the upstream sent, the terminal gets one line.
    line.replace(['\r', '\n'], " ")
}

/// The environment variable holding provider `id`'s API key.
pub fn key_env(id: &str) -> Option<&'static str> {
    providers::spec(id).ok()?.api_key_env()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::Error;

    #[test]
    fn rejected_key_names_the_variable_to_check() {
        let e = Error::new(ErrorKind::Authentication, "the API key was rejected")
            .with_provider("dashscope")
            .with_code("InvalidApiKey")
            .with_status(401);
        assert_eq!(
            describe(&e),
            "dashscope: the API key was rejected (InvalidApiKey, HTTP 401); check DASHSCOPE_API_KEY"
        );
    }

    #[test]
    fn missing_key_names_provider_once_and_the_variable() {
        let e = providers::ProviderSettings::default()
            .require(providers::spec("dashscope").unwrap(), "api_key")
            .unwrap_err();
        assert_eq!(
            describe(&e),
            "dashscope: missing `api_key`: set DASHSCOPE_API_KEY (for example `export DASHSCOPE_API_KEY=...`)"
        );
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        let e = Error::protocol("bad\nframe");
        assert_eq!(describe(&e), "bad frame");
    }

    #[test]
    fn cancellation_maps_to_exit_130() {
        let e: CliError = Error::new(ErrorKind::Cancelled, "x").into();
        assert_eq!(e.exit_code(), 130);
        assert_eq!(CliError::msg("x").exit_code(), 1);
    }
}
