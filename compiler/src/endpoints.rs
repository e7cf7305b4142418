//! Endpoints as the compiler sees them: EndpointSlices and legacy `v1/Endpoints`, validated
//! into one shape ([`SliceDef`]).
//!
//! Both sources become "a set of ports × a set of endpoints", so the rest of the compiler
//! never knows which one it came from. Endpoint addresses the API server would refuse are
//! not fatal: they are set aside in [`SliceDef::rejected`] and reported as warnings, while
//! the rest of the slice is used. Conversions borrow from the snapshot to keep memory per
//! endpoint small.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
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
}

/// Why an endpoint address is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("has no address")]
    Missing,
    #[error("is not an IP address")]
    Parse,
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
pub fn slice_family(slice: &EndpointSlice) -> Result<Option<IpFamily>, SliceError> {
    match slice.address_type.as_str() {
        "IPv4" => Ok(Some(IpFamily::V4)),
        "IPv6" => Ok(Some(IpFamily::V6)),
        "FQDN" => Ok(None),
        other => Err(SliceError::AddressType(other.to_owned())),
    }
}

impl<'a> TryFrom<&'a EndpointSlice> for SliceDef<'a> {
    type Error = SliceError;

    fn try_from(slice: &'a EndpointSlice) -> Result<Self, Self::Error> {
        let (namespace, name) = meta::identity(&slice.metadata, names::dns1123_subdomain)?;
        let family = slice_family(slice)?;
        let mut ports = Vec::new();
        for (index, port) in slice.ports.iter().flatten().enumerate() {
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
    fn push_endpoint(&mut self, endpoint: &'a Endpoint, family: Option<IpFamily>) {
        let Some(address) = endpoint.addresses.first() else {
            self.rejected.push(RejectedAddress {
                address: "",
                reason: AddressError::Missing,
            });
            return;
        };
        let conditions = endpoint.conditions.as_ref();
        let usability = Usability::from_conditions(
            conditions.and_then(|c| c.ready),
            conditions.and_then(|c| c.serving),
            conditions.and_then(|c| c.terminating),
        );
        self.push_address(address, family, usability, endpoint.node_name.as_deref());
    }

    fn push_address(
        &mut self,
        address: &'a str,
        family: Option<IpFamily>,
        usability: Usability,
        node: Option<&'a str>,
    ) {
        match check_address(address, family) {
            Ok(addr) => self.endpoints.push(EndpointDef {
                addr,
                usability,
                node,
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
            def.push_address(&address.ip, None, usability, address.node_name.as_deref());
        }
    };
    push(&subset.addresses, Usability::Ready);
    push(&subset.not_ready_addresses, Usability::Unusable);
    Ok(def)
}
