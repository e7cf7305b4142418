//! The kernel as the syncer drives it in `nftproxy run` (and in the scale harness): full
//! syncs through libnftables, partial syncs as nftproxy's own netlink batches.

use nftproxy_rules::{Ruleset, Transaction};

use crate::kernel::{Kernel, KernelError};
use crate::sync::{Route, Target};

/// The kernel as the syncer uses it: a listing that the model cannot represent means
/// "replace the tables", any other failure is an error. Partial syncs go as netlink
/// batches of nftproxy's own when `batches` is set and the encoder covers them.
#[derive(Debug)]
pub struct KernelTarget {
    pub kernel: Kernel,
    pub batches: bool,
}

impl Target for KernelTarget {
    type Error = KernelError;

    fn apply(&mut self, transaction: &Transaction) -> Result<(), KernelError> {
        self.kernel.apply(transaction)
    }

    fn apply_partial(
        &mut self,
        transaction: &Transaction,
        current: &Ruleset,
        desired: &Ruleset,
    ) -> Result<Route, KernelError> {
        if !self.batches {
            return self.apply(transaction).map(|()| Route::Libnftables);
        }
        match self.kernel.apply_batch(transaction, &[desired, current]) {
            Ok(()) => Ok(Route::Netlink),
            Err(err) if err.not_sent() => {
                // Nothing reached nf_tables: the same transaction can go the other way.
                tracing::debug!(%err, "partial sync through libnftables");
                self.apply(transaction).map(|()| Route::Libnftables)
            }
            Err(err) => Err(KernelError::Refused {
                message: err.to_string(),
            }),
        }
    }

    fn list(&mut self, expected: &Ruleset) -> Result<Option<Ruleset>, KernelError> {
        match self.kernel.list_expecting(expected) {
            Ok((ruleset, listed)) => {
                tracing::debug!(
                    checked = listed.checked,
                    listed = listed.listed,
                    "read nftproxy's tables (checked from netlink dumps, listed through libnftables)"
                );
                Ok(Some(ruleset))
            }
            Err(KernelError::ParseListing { source }) => {
                tracing::warn!(
                    "nftproxy's tables hold something it never writes ({source}); replacing them"
                );
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}
