//! csi-sanity harness.
