//! What can go wrong when calling a node agent.

use std::time::Duration;

/// A failed call to a node agent. `agent` names the agent (its node and
/// URL when known); no variant ever carries the bearer token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The agent's URL or token cannot be used (bad URL, plain http to a
    /// remote host, https without a CA, token not a valid header).
    #[error("node agent {agent}: {reason}")]
    Endpoint {
        /// The agent.
        agent: String,
        /// What is wrong and what to change.
        reason: String,
    },
    /// The agent could not be reached (connect, I/O).
    #[error("node agent {agent} is unreachable: {reason}; check that it runs and that the controller can reach it")]
    Unreachable {
        /// The agent.
        agent: String,
        /// What the transport reported.
        reason: String,
    },
    /// TLS failed: the agent's certificate was refused, or the handshake broke.
    #[error("node agent {agent}: TLS failed: {reason}; check that its certificate is signed by the configured CA (or is the pinned one) for the expected name")]
    Tls {
        /// The agent.
        agent: String,
        /// What rustls reported.
        reason: String,
    },
    /// No answer within the call's time limit.
    #[error("node agent {agent} did not answer {path} within {after:?}")]
    Timeout {
        /// The agent.
        agent: String,
        /// The route.
        path: &'static str,
        /// The time limit.
        after: Duration,
    },
    /// The agent refused the bearer token (401).
    #[error("node agent {agent} refused the bearer token on {path}; check that the controller and the agents share one token")]
    Unauthorized {
        /// The agent.
        agent: String,
        /// The route.
        path: &'static str,
    },
    /// The agent refused the request as the volume stands (409).
    #[error("node agent {agent} refused {path}: {message}")]
    Conflict {
        /// The agent.
        agent: String,
        /// The route.
        path: &'static str,
        /// The agent's explanation.
        message: String,
    },
    /// Any other non-success answer.
    #[error("node agent {agent} answered {status} to {path}: {message}")]
    Status {
        /// The agent.
        agent: String,
        /// The route.
        path: &'static str,
        /// HTTP status code.
        status: u16,
        /// The agent's explanation.
        message: String,
    },
    /// A success answer that is not what the route returns.
    #[error("node agent {agent} sent an unreadable answer to {path}: {reason}")]
    Decode {
        /// The agent.
        agent: String,
        /// The route.
        path: &'static str,
        /// The decoding problem.
        reason: String,
    },
}

impl AgentError {
    /// Whether trying the same idempotent call again may succeed: the agent
    /// was unreachable, slow, or answered 502/503/504.
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Unreachable { .. } | AgentError::Timeout { .. } => true,
            AgentError::Status { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}
