//! Sends nf_tables batches straight to the kernel over a netfilter netlink socket.
//!
//! The kernel runs a batch inside the `send` call and queues its answers before `send`
//! returns: an error for every message it refused (the whole batch is then undone) and an
//! acknowledgement for the last message, which alone asks for one. So after sending, the
//! socket is drained without waiting, and the batch took effect exactly when that
//! acknowledgement is there and no error is.

use std::io;
use std::time::Duration;

use nftproxy_rules::{Op, Transaction};

use nftproxy_rules::Ruleset;

use super::batch::attrs::Writer;
use super::batch::nft::{
    NFT_MSG_GETGEN, NFT_MSG_GETTABLE, NFT_MSG_NEWGEN, NFT_MSG_NEWTABLE, NFTA_GEN_ID,
    NFTA_TABLE_NAME, nftables_message,
};
use super::batch::{self, Batch, Unsupported};
use crate::netlink::{self, NetlinkSocket};

/// Room for the kernel's answers to one batch (errors echo the refused message).
const MIN_SEND_BUFFER: usize = 256 * 1024;

/// Why a batch did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The batch never reached nf_tables (socket error): the kernel is unchanged.
    #[error("cannot send the netlink batch: {0}")]
    Io(#[from] io::Error),
    /// nf_tables refused an operation (`index` in the transaction; `None`: a message of
    /// the batch's own, its begin or end); the whole batch was undone.
    #[error("{what}: {error}")]
    Refused {
        index: Option<usize>,
        what: String,
        error: io::Error,
    },
    /// The kernel answered neither an error nor the acknowledgement.
    #[error("the kernel did not acknowledge the batch")]
    NoAnswer,
    /// The encoder does not cover the transaction; nothing was sent.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
}

impl DirectError {
    /// Whether the kernel is certainly unchanged and never saw the transaction, so that it
    /// can go another way (through libnftables).
    pub fn not_sent(&self) -> bool {
        matches!(self, DirectError::Io(_) | DirectError::Unsupported(_))
    }
}

/// A netlink socket to nf_tables in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netfilter {
    socket: NetlinkSocket,
    next_seq: u32,
    send_buffer: usize,
}

impl Netfilter {
    pub fn open() -> io::Result<Self> {
        let socket = NetlinkSocket::open(libc::NETLINK_NETFILTER, Duration::from_secs(5))?;
        Ok(Netfilter {
            socket,
            next_seq: 1,
            send_buffer: 0,
        })
    }

    /// Encodes `transaction` (see [`batch::encode`] for `declared`) and sends it.
    pub fn send(
        &mut self,
        transaction: &Transaction,
        declared: &[&Ruleset],
    ) -> Result<(), DirectError> {
        let batch = batch::encode(transaction, self.next_seq, declared)?;
        self.apply(&batch, transaction)
    }

    /// Sends `batch` (encoded from `transaction`) and reads the kernel's verdict on it.
    /// Its sequence numbers are its own; the next batch of [`Self::send`] starts after them.
    pub fn apply(&mut self, batch: &Batch, transaction: &Transaction) -> Result<(), DirectError> {
        self.next_seq = batch.last_seq.wrapping_add(2);
        self.drain_stale()?;
        let wanted = (batch.bytes.len() + 64 * 1024).max(MIN_SEND_BUFFER);
        if wanted > self.send_buffer {
            let size = libc::c_int::try_from(wanted).unwrap_or(libc::c_int::MAX);
            self.socket
                .set_int_option(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size)?;
            self.socket
                .set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size)?;
            self.send_buffer = wanted;
        }
        self.socket.send(&batch.bytes)?;
        let mut refused = None;
        let mut acknowledged = false;
        loop {
            let datagram = match self.socket.receive(libc::MSG_DONTWAIT) {
                Ok(datagram) => datagram,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(DirectError::Io(err)),
            };
            for message in netlink::messages(datagram) {
                let (kind, _, seq, payload) =
                    message.map_err(|what| io::Error::new(io::ErrorKind::InvalidData, what))?;
                if kind != netlink::NLMSG_ERROR {
                    continue;
                }
                let code = netlink::error_code(payload).unwrap_or(-libc::EIO);
                if code == 0 {
                    acknowledged |= seq == batch.last_seq;
                } else if refused.is_none() {
                    let index = batch
                        .messages
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map(|(_, index)| *index);
                    refused = Some((index, io::Error::from_raw_os_error(-code)));
                }
            }
        }
        match refused {
            Some((index, error)) => Err(DirectError::Refused {
                index,
                what: match index.and_then(|i| transaction.iter().nth(i).map(|op| (i, op))) {
                    Some((i, op)) => format!("operation {i} ({})", describe(&op)),
                    None => "the batch itself".to_owned(),
                },
                error,
            }),
            None if acknowledged => Ok(()),
            None => Err(DirectError::NoAnswer),
        }
    }

    /// Drops answers left from an earlier batch (none are expected).
    fn drain_stale(&mut self) -> io::Result<()> {
        loop {
            match self.socket.receive(libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }
}

/// A short description of an operation for error messages.
fn describe(op: &Op) -> String {
    match op {
        Op::AddTable(t) => format!("add table {}", t.id()),
        Op::DeleteTable(id) => format!("delete table {id}"),
        Op::AddChain { table, chain } => format!("add chain {table} {}", chain.name),
        Op::FlushChain { table, chain } => format!("flush chain {table} {chain}"),
        Op::DeleteChain { table, chain } => format!("delete chain {table} {chain}"),
        Op::AddRule { table, chain, .. } => format!("add rule to {table} {chain}"),
        Op::AddSet { table, set } => format!("add set {table} {}", set.name),
        Op::DeleteSet { table, set } => format!("delete set {table} {set}"),
        Op::AddElements {
            table,
            set,
            elements,
        } => {
            format!("add {} elements to {table} {set}", elements.len())
        }
        Op::DeleteElements {
            table,
            set,
            elements,
        } => {
            format!("delete {} elements from {table} {set}", elements.len())
        }
        Op::AddCounter { table, counter } => format!("add counter {table} {counter}"),
        Op::DeleteCounter { table, counter } => format!("delete counter {table} {counter}"),
        Op::CreateTable(t) => format!("create table {}", t.id()),
    }
}

/// The dump's answers are `NFT_MSG_NEWTABLE` messages.
const NEW_TABLE: u16 = nftables_message(NFT_MSG_NEWTABLE);

impl Netfilter {
    /// Every table in this namespace as (nfproto family number, name): one netlink dump,
    /// which costs the same whatever the tables hold (nft's `list tables` fills its whole
    /// cache first).
    pub fn table_names(&mut self) -> io::Result<Vec<(u8, String)>> {
        let mut tables = Vec::new();
        // Family 0 (`NFPROTO_UNSPEC`): the tables of every family.
        self.dump(
            NFT_MSG_GETTABLE,
            0,
            |_| {},
            |kind, payload| {
                if kind != NEW_TABLE || payload.len() < 4 {
                    return;
                }
                let name = netlink::attrs(&payload[4..])
                    .find(|(kind, _)| *kind == NFTA_TABLE_NAME)
                    .map(|(_, value)| attr_string(value));
                if let Some(name) = name {
                    tables.push((payload[0], name));
                }
            },
        )?;
        Ok(tables)
    }

    /// Runs one netlink dump of nf_tables message `msg` for nfproto `family` (0: all), with
    /// the request's attributes written by `request`, and gives every answer's (type,
    /// payload after the netlink header) to `each` until the dump is done.
    /// A dump whose contents changed while it ran (`NLM_F_DUMP_INTR`) is an error of kind
    /// `Interrupted`.
    pub fn dump(
        &mut self,
        msg: u16,
        family: u8,
        request: impl FnOnce(&mut Writer),
        each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.exchange(msg, family, netlink::NLM_F_DUMP, request, each)
    }

    /// The ruleset's generation: nf_tables counts every committed transaction, so the
    /// same number before and after a series of dumps means nothing changed in between.
    pub fn generation(&mut self) -> io::Result<u32> {
        let mut generation = None;
        self.exchange(
            NFT_MSG_GETGEN,
            0,
            netlink::NLM_F_ACK,
            |_| {},
            |kind, payload| {
                if kind == nftables_message(NFT_MSG_NEWGEN) && payload.len() >= 4 {
                    generation = netlink::attrs(&payload[4..])
                        .find(|(kind, _)| *kind == NFTA_GEN_ID)
                        .and_then(|(_, value)| Some(u32::from_be_bytes(value.try_into().ok()?)));
                }
            },
        )?;
        generation.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no generation id"))
    }

    /// Sends one request (`flags`: a dump, or an acknowledged get) and gives every answer
    /// to `each` until the kernel says it is done.
    fn exchange(
        &mut self,
        msg: u16,
        family: u8,
        flags: u16,
        request: impl FnOnce(&mut Writer),
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.drain_stale()?;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let mut writer = Writer::new();
        let kind = nftables_message(msg);
        let open = writer.begin_message(kind, netlink::NLM_F_REQUEST | flags, seq, family, 0);
        request(&mut writer);
        writer.end_message(open);
        self.socket.send(&writer.into_bytes())?;
        let mut interrupted = false;
        loop {
            let datagram = self.socket.receive(0)?;
            for message in netlink::messages(datagram) {
                let (kind, flags, _, payload) =
                    message.map_err(|what| io::Error::new(io::ErrorKind::InvalidData, what))?;
                interrupted |= flags & netlink::NLM_F_DUMP_INTR != 0;
                match kind {
                    netlink::NLMSG_DONE => return finished(interrupted),
                    netlink::NLMSG_ERROR => {
                        let code = netlink::error_code(payload).unwrap_or(-libc::EIO);
                        if code == 0 {
                            return finished(interrupted);
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => each(kind, payload),
                }
            }
        }
    }
}

fn finished(interrupted: bool) -> io::Result<()> {
    if interrupted {
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the tables changed during the dump",
        ))
    } else {
        Ok(())
    }
}

/// A NUL-terminated string attribute's text.
pub fn attr_string(value: &[u8]) -> String {
    let value = value.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(value).into_owned()
}
