//! A netlink message writer: headers, attributes and nested attributes, 4-byte aligned.

/// `NLA_F_NESTED`: set on every nested attribute, as libmnl does.
const NLA_F_NESTED: u16 = 0x8000;

/// Bytes of netlink messages under construction.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

/// Where an open message or nested attribute starts, to patch its length when it closes.
#[derive(Debug, Clone, Copy)]
#[must_use = "a message or nest must be closed with `end`"]
pub struct Open(usize);

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Starts a message: `nlmsghdr` plus the nfnetlink `nfgenmsg` header.
    pub fn begin_message(
        &mut self,
        kind: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> Open {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.push(family);
        self.bytes.push(0); // NFNETLINK_V0
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
        Open(start)
    }

    /// Closes a message: writes its length (messages are always 4-byte aligned here).
    pub fn end_message(&mut self, open: Open) {
        let len = u32::try_from(self.bytes.len() - open.0).unwrap_or(u32::MAX);
        self.bytes[open.0..open.0 + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Adds `flags` to the header of the message opened at `open`.
    pub fn add_flags(&mut self, open: Open, flags: u16) {
        let at = open.0 + 6;
        let old = u16::from_ne_bytes([self.bytes[at], self.bytes[at + 1]]);
        self.bytes[at..at + 2].copy_from_slice(&(old | flags).to_ne_bytes());
    }

    /// One attribute with `payload`, padded to 4 bytes.
    pub fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(payload);
        self.pad();
    }

    /// A big-endian u32 attribute (nf_tables' `NLA_U32` values are network order).
    pub fn u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    /// A big-endian u64 attribute.
    pub fn u64(&mut self, kind: u16, value: u64) {
        self.attr(kind, &value.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, kind: u16, value: &str) {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.attr(kind, &payload);
    }

    /// Starts a nested attribute.
    pub fn begin_nest(&mut self, kind: u16) -> Open {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&0u16.to_ne_bytes());
        self.bytes
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Open(start)
    }

    /// Closes a nested attribute: writes its length.
    pub fn end_nest(&mut self, open: Open) {
        let len = u16::try_from(self.bytes.len() - open.0).unwrap_or(u16::MAX);
        self.bytes[open.0..open.0 + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_measured() {
        let mut w = Writer::new();
        let msg = w.begin_message(0x0a06, 1, 7, 2, 0);
        w.str(1, "t");
        let nest = w.begin_nest(4);
        w.u32(1, 3);
        w.end_nest(nest);
        w.end_message(msg);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 20 + 8 + 12);
        assert_eq!(
            u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            40
        );
        // "t\0" is 6 bytes of attribute padded to 8.
        assert_eq!(&bytes[20..26], &[6, 0, 1, 0, b't', 0]);
        assert_eq!(u16::from_ne_bytes([bytes[28], bytes[29]]), 12);
        assert_eq!(u16::from_ne_bytes([bytes[30], bytes[31]]), 4 | NLA_F_NESTED);
        assert_eq!(&bytes[36..40], &3u32.to_be_bytes());
    }
}
