//! CSI v1.12 protocol types.
