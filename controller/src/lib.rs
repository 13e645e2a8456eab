//! Shorthorn controller.
