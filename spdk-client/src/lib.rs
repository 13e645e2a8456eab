//! Typed SPDK JSON-RPC client.
