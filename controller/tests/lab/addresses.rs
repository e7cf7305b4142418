//! Removing node-1's extra LAN addresses again, for tests that follow address changes.

use super::Lab;

impl Lab {
    /// Deletes `cidr` (as given to [`Lab::add_node1_lan_address`]) from node-1's LAN
    /// interface.
    pub fn del_node1_lan_address(&self, cidr: &str) {
        super::topology::ip_batch(&self.node1, &[format!("addr del {cidr} dev lan0")]);
    }
}
