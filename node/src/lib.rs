//! Shorthorn node.
