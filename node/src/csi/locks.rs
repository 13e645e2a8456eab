//! One operation per volume at a time; a concurrent one is refused with
//! ABORTED, as the CSI spec recommends, and the CO retries.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::Status;

use super::status::busy;

/// The set of volumes with an operation in flight.
#[derive(Debug, Default, Clone)]
pub struct VolumeLocks {
    held: Arc<Mutex<HashSet<String>>>,
}

/// Releases the volume when dropped.
#[derive(Debug)]
pub struct VolumeGuard {
    held: Arc<Mutex<HashSet<String>>>,
    volume_id: String,
}

impl VolumeLocks {
    /// Takes the volume, or ABORTED when it is busy.
    pub fn try_lock(&self, volume_id: &str) -> Result<VolumeGuard, Status> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.insert(volume_id.to_owned()) {
            return Err(busy(volume_id));
        }
        Ok(VolumeGuard {
            held: Arc::clone(&self.held),
            volume_id: volume_id.to_owned(),
        })
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.volume_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_aborted_until_the_first_is_dropped() {
        let locks = VolumeLocks::default();
        let g = locks.try_lock("v").unwrap();
        assert_eq!(
            locks.try_lock("v").unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert!(locks.try_lock("w").is_ok());
        drop(g);
        assert!(locks.try_lock("v").is_ok());
    }
}
