//! NVMe Qualified Names that are safe to hand to SPDK and to the kernel's
//! fabrics options string.

/// Longest NQN the NVMe specification allows.
pub const MAX_NQN_LEN: usize = 223;

/// An NQN that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid nqn {value:?}: {reason}")]
pub struct InvalidNqn {
    /// The rejected NQN.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// `Ok` when `nqn` is a well-formed NQN that cannot inject options (no `,`,
/// `=`, whitespace or control characters).
pub fn validate_nqn(nqn: &str) -> Result<(), InvalidNqn> {
    let reject = |reason| {
        Err(InvalidNqn {
            value: nqn.to_owned(),
            reason,
        })
    };
    if nqn.is_empty() {
        return reject("empty");
    }
    if nqn.len() > MAX_NQN_LEN {
        return reject("longer than 223 bytes");
    }
    if !nqn.starts_with("nqn.") {
        return reject("does not start with `nqn.`");
    }
    if nqn
        .chars()
        .any(|c| c == ',' || c == '=' || c.is_whitespace() || c.is_control())
    {
        return reject("contains `,`, `=`, whitespace or a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_nqns_and_refuses_injection() {
        assert!(validate_nqn("nqn.2014-08.org.nvmexpress:uuid:1").is_ok());
        for bad in [
            "",
            "not-an-nqn",
            "nqn.a,traddr=6.6.6.6",
            "nqn.a b",
            "nqn.a\nb",
        ] {
            assert!(validate_nqn(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("nqn.{}", "x".repeat(MAX_NQN_LEN));
        assert_eq!(
            validate_nqn(&long).unwrap_err().reason,
            "longer than 223 bytes"
        );
    }
}
