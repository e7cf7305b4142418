//! Endpoints as the compiler sees them: EndpointSlices and legacy `v1/Endpoints`, validated
//! into one shape ([`SliceDef`]).
//!
//! Both sources become "a set of ports × a set of endpoints", so the rest of the compiler
//! never knows which one it came from. Endpoint addresses the API server would refuse are
//! not fatal: they are set aside in [`SliceDef::rejected`] and reported as warnings, while
//! the rest of the slice is used. Conversions borrow from the snapshot to keep memory per
//! endpoint small: topology hints stay in the slice and an endpoint holds one pointer to
//! them ([`Hints`]), or none at all when it has no hint.

use std::cmp::Ordering;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::EndpointHints;

use crate::compact_slice::{CompactEndpoint, CompactSlice};
use thiserror::Error;

use crate::family::IpFamily;
use crate::meta::{self, IdentityError};
use crate::names::{self, NameError};
use crate::protocol::{Protocol, ProtocolError};

/// Whether (and how) an endpoint may receive new connections. Better first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Usability {
    /// `ready`: always used.
    Ready,
    /// `serving && terminating`: used only when no ready endpoint exists.
    Terminating,
    /// Neither: never used.
    Unusable,
}

impl Usability {
    /// From the API's conditions: `ready` nil ⇒ true, `serving` nil ⇒ `ready`,
    /// `terminating` nil ⇒ false.
    pub fn from_conditions(
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> Self {
        let ready = ready.unwrap_or(true);
        let serving = serving.unwrap_or(ready);
        if ready {
            Usability::Ready
        } else if serving && terminating.unwrap_or(false) {
            Usability::Terminating
        } else {
            Usability::Unusable
        }
    }
}

/// One port of a slice: the service port with the same name and protocol maps to `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlicePort<'a> {
    pub name: &'a str,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint (its first address, which the API guarantees is the meaningful one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointDef<'a> {
    pub addr: IpAddr,
    pub usability: Usability,
    pub node: Option<&'a str>,
    /// `hints`, when it names at least one zone or node (legacy Endpoints have none).
    pub hints: Option<Hints<'a>>,
}

/// An endpoint's topology hints (`hints.forZones`, `hints.forNodes`), borrowed from its
/// EndpointSlice. Names that are empty match no zone and no node.
///
/// Ordered by zone names, then node names, so that choosing among duplicate endpoints
/// never depends on input order.
#[derive(Debug, Clone, Copy)]
pub struct Hints<'a>(&'a EndpointHints);

impl<'a> Hints<'a> {
    /// The hints of an endpoint, or `None` when they list neither a zone nor a node.
    pub fn of(hints: Option<&'a EndpointHints>) -> Option<Self> {
        let hints = hints?;
        let listed = |len: Option<usize>| len.is_some_and(|n| n > 0);
        let any = listed(hints.for_zones.as_ref().map(Vec::len))
            || listed(hints.for_nodes.as_ref().map(Vec::len));
        any.then_some(Hints(hints))
    }

    /// `forZones` names, in listed order.
    pub fn zones(self) -> impl Iterator<Item = &'a str> {
        self.0.for_zones.iter().flatten().map(|z| z.name.as_str())
    }

    /// `forNodes` names, in listed order.
    pub fn nodes(self) -> impl Iterator<Item = &'a str> {
        self.0.for_nodes.iter().flatten().map(|n| n.name.as_str())
    }

    /// Whether `forZones` lists at least one zone.
    pub fn has_zones(self) -> bool {
        self.zones().next().is_some()
    }

    /// Whether `forNodes` lists at least one node.
    pub fn has_nodes(self) -> bool {
        self.nodes().next().is_some()
    }

    /// Whether `forZones` names `zone` (never true for an empty name).
    pub fn for_zone(self, zone: &str) -> bool {
        !zone.is_empty() && self.zones().any(|z| z == zone)
    }

    /// Whether `forNodes` names `node` (never true for an empty name).
    pub fn for_node(self, node: &str) -> bool {
        !node.is_empty() && self.nodes().any(|n| n == node)
    }
}

impl Ord for Hints<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let zones = self.zones().cmp(other.zones());
        zones.then_with(|| self.nodes().cmp(other.nodes()))
    }
}

impl PartialOrd for Hints<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Hints<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Hints<'_> {}

/// Why an endpoint address is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("has no address")]
    Missing,
    #[error("is not an IP address")]
    Parse,
    #[error("is an IPv4-mapped IPv6 address, which the API server refuses (write {ipv4})")]
    Mapped { ipv4: std::net::Ipv4Addr },
    #[error("is not an {expected} address")]
    Family { expected: IpFamily },
    #[error("is unspecified")]
    Unspecified,
    #[error("is a loopback address")]
    Loopback,
    #[error("is a link-local address")]
    LinkLocal,
    #[error("is a multicast address")]
    Multicast,
}

/// An endpoint address that was set aside, for the diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectedAddress<'a> {
    pub address: &'a str,
    pub reason: AddressError,
}

/// Ports and endpoints of one EndpointSlice, or of one subset of a legacy Endpoints object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceDef<'a> {
    /// `EndpointSlice` or `Endpoints`: the kind diagnostics name.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub ports: Vec<SlicePort<'a>>,
    pub endpoints: Vec<EndpointDef<'a>>,
    pub rejected: Vec<RejectedAddress<'a>>,
}

/// Why an EndpointSlice or Endpoints object was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SliceError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("addressType {0:?} is not IPv4, IPv6 or FQDN")]
    AddressType(String),
    #[error("ports[{index}].port {port} is out of range 1-65535")]
    Port { index: usize, port: i32 },
    #[error("ports[{index}]: {source}")]
    Protocol { index: usize, source: ProtocolError },
    #[error("ports[{index}].name {name:?} is invalid: {source}")]
    PortName {
        index: usize,
        name: String,
        source: NameError,
    },
}

/// Checks an endpoint address the way the API server does.
pub fn check_address(text: &str, expected: Option<IpFamily>) -> Result<IpAddr, AddressError> {
    let addr: IpAddr = text.parse().map_err(|_| AddressError::Parse)?;
    if let Some(ipv4) = crate::family::ipv4_mapped(&addr) {
        return Err(AddressError::Mapped { ipv4 });
    }
    if let Some(expected) = expected.filter(|f| *f != IpFamily::of(&addr)) {
        return Err(AddressError::Family { expected });
    }
    let link_local = match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    };
    if addr.is_unspecified() {
        Err(AddressError::Unspecified)
    } else if addr.is_loopback() {
        Err(AddressError::Loopback)
    } else if link_local {
        Err(AddressError::LinkLocal)
    } else if addr.is_multicast() {
        Err(AddressError::Multicast)
    } else {
        Ok(addr)
    }
}

/// The family an EndpointSlice's `addressType` names; `None` for FQDN slices, which a
/// proxy ignores.
pub fn slice_family(slice: &CompactSlice) -> Result<Option<IpFamily>, SliceError> {
    match slice.address_type.as_str() {
        "IPv4" => Ok(Some(IpFamily::V4)),
        "IPv6" => Ok(Some(IpFamily::V6)),
        "FQDN" => Ok(None),
        other => Err(SliceError::AddressType(other.to_owned())),
    }
}

impl<'a> TryFrom<&'a CompactSlice> for SliceDef<'a> {
    type Error = SliceError;

    fn try_from(slice: &'a CompactSlice) -> Result<Self, Self::Error> {
        let (namespace, name) = meta::identity(&slice.metadata, names::dns1123_subdomain)?;
        let family = slice_family(slice)?;
        let mut ports = Vec::new();
        for (index, port) in slice.ports.iter().enumerate() {
            let raw = RawPort {
                index,
                name: port.name.as_deref(),
                protocol: port.protocol.as_deref(),
                port: port.port,
            };
            ports.extend(raw.validate()?);
        }
        let mut def = SliceDef {
            kind: "EndpointSlice",
            namespace,
            name,
            ports,
            endpoints: Vec::with_capacity(slice.endpoints.len()),
            rejected: Vec::new(),
        };
        for endpoint in &slice.endpoints {
            def.push_endpoint(endpoint, family);
        }
        Ok(def)
    }
}

impl<'a> SliceDef<'a> {
    fn push_endpoint(&mut self, endpoint: &'a CompactEndpoint, family: Option<IpFamily>) {
        let Some(address) = endpoint.address.as_deref() else {
            self.rejected.push(RejectedAddress {
                address: "",
                reason: AddressError::Missing,
            });
            return;
        };
        let usability =
            Usability::from_conditions(endpoint.ready, endpoint.serving, endpoint.terminating);
        let node = endpoint.node_name.as_deref();
        let hints = Hints::of(endpoint.hints.as_deref());
        self.push_address(address, family, usability, node, hints);
    }

    fn push_address(
        &mut self,
        address: &'a str,
        family: Option<IpFamily>,
        usability: Usability,
        node: Option<&'a str>,
        hints: Option<Hints<'a>>,
    ) {
        match check_address(address, family) {
            Ok(addr) => self.endpoints.push(EndpointDef {
                addr,
                usability,
                node,
                hints,
            }),
            Err(reason) => self.rejected.push(RejectedAddress { address, reason }),
        }
    }
}

/// A port as both sources spell it, before validation.
struct RawPort<'a> {
    index: usize,
    name: Option<&'a str>,
    protocol: Option<&'a str>,
    port: Option<i32>,
}

impl<'a> RawPort<'a> {
    /// The validated port; `None` for a port without a number, which matches nothing.
    fn validate(self) -> Result<Option<SlicePort<'a>>, SliceError> {
        let index = self.index;
        let name = self.name.unwrap_or_default();
        if !name.is_empty() {
            names::dns1123_label(name).map_err(|source| SliceError::PortName {
                index,
                name: name.to_owned(),
                source,
            })?;
        }
        let protocol = Protocol::parse(self.protocol)
            .map_err(|source| SliceError::Protocol { index, source })?;
        let Some(number) = self.port else {
            return Ok(None);
        };
        let port = u16::try_from(number)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(SliceError::Port {
                index,
                port: number,
            })?;
        Ok(Some(SlicePort {
            name,
            protocol,
            port,
        }))
    }
}

/// A legacy Endpoints object as slices: one per subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySlices<'a>(pub Vec<SliceDef<'a>>);

impl<'a> TryFrom<&'a Endpoints> for LegacySlices<'a> {
    type Error = SliceError;

    fn try_from(endpoints: &'a Endpoints) -> Result<Self, Self::Error> {
        let (namespace, name) = meta::identity(&endpoints.metadata, names::dns1035_label)?;
        let subsets = endpoints.subsets.iter().flatten();
        let slices = subsets
            .map(|subset| legacy_subset(namespace, name, subset))
            .collect::<Result<_, _>>()?;
        Ok(LegacySlices(slices))
    }
}

fn legacy_subset<'a>(
    namespace: &'a str,
    name: &'a str,
    subset: &'a EndpointSubset,
) -> Result<SliceDef<'a>, SliceError> {
    let mut ports = Vec::new();
    for (index, port) in subset.ports.iter().flatten().enumerate() {
        let raw = RawPort {
            index,
            name: port.name.as_deref(),
            protocol: port.protocol.as_deref(),
            port: Some(port.port),
        };
        ports.extend(raw.validate()?);
    }
    let mut def = SliceDef {
        kind: "Endpoints",
        namespace,
        name,
        ports,
        endpoints: Vec::new(),
        rejected: Vec::new(),
    };
    let mut push = |addresses: &'a Option<Vec<EndpointAddress>>, usability| {
        for address in addresses.iter().flatten() {
            let node = address.node_name.as_deref();
            def.push_address(&address.ip, None, usability, node, None);
        }
    };
    push(&subset.addresses, Usability::Ready);
    push(&subset.not_ready_addresses, Usability::Unusable);
    Ok(def)
}
