//! `--net veth`: a virtual Ethernet cable between the host and the container,
//! made with rtnetlink requests (rtnetlink(7)) as `ip` sends them, not by
//! running `ip`.
//!
//! The demo's network, by hand:
//! ```sh
//! ip link add veth$PID type veth peer name eth0 netns $PID
//! ip addr add 10.200.0.1/24 dev veth$PID && ip link set veth$PID up
//! nsenter -t $PID -n sh -c 'ip addr add 10.200.0.2/24 dev eth0; ip link set eth0 up;
//!                           ip route add default via 10.200.0.1'
//! ```
//! A veth pair is two interfaces joined back to back: a frame sent into one
//! comes out of the other. One end stays on the host, the other is created
//! directly inside the container's network namespace (IFLA_NET_NS_PID), named
//! `eth0`. When that namespace dies with the container, the kernel destroys
//! the pair: nothing is left even if nsenter-run itself is killed.
//!
//! The container side is configured through a netlink socket opened *inside*
//! the container's namespace (setns(2) for the socket() call only): a socket
//! belongs to the network namespace it was created in.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeader, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;

use crate::explain::Explain;
use crate::Error;

/// An IPv4 address with its prefix length: `10.200.0.2/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad =
            || format!("'{text}' is not an IPv4 address with a prefix length (like 10.200.0.2/24)");
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(1..=30).contains(&prefix) {
            return Err(format!(
                "'{text}': the prefix length must be 1 to 30, to leave room for two hosts"
            ));
        }
        Ok(Cidr { addr, prefix })
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// The subnet's first host address (`10.200.0.1` for `10.200.0.2/24`).
    pub fn first_host(self) -> Cidr {
        Cidr {
            addr: Ipv4Addr::from(u32::from(self.network()) + 1),
            prefix: self.prefix,
        }
    }

    fn is_network_or_broadcast(self) -> bool {
        let a = u32::from(self.addr);
        a == u32::from(self.network()) || a == u32::from(self.network()) | !self.mask()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What `--net veth --ip ... [--host-ip ...] [--bridge ...]` asked for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPlan {
    /// `eth0`'s address in the container.
    pub ip: Cidr,
    /// The host end's address (not with a bridge unless given: then it is
    /// only the gateway).
    pub host_ip: Option<Cidr>,
    pub bridge: Option<String>,
}

impl VethPlan {
    /// Check the addresses before anything is created.
    pub fn new(ip: &str, host_ip: Option<&str>, bridge: Option<&str>) -> Result<VethPlan, String> {
        let ip = Cidr::parse(ip).map_err(|e| format!("--ip {e}"))?;
        if ip.is_network_or_broadcast() {
            return Err(format!(
                "--ip {ip}: that is the subnet's network or broadcast address"
            ));
        }
        let host_ip = match host_ip {
            Some(h) => Some(Cidr::parse(h).map_err(|e| format!("--host-ip {e}"))?),
            None if bridge.is_none() => Some(ip.first_host()),
            None => None,
        };
        if let Some(h) = host_ip {
            if h.addr == ip.addr {
                return Err(format!(
                    "--ip {ip} is the host end's address too; give another with --host-ip"
                ));
            }
            if !ip.contains(h.addr) {
                return Err(format!(
                    "--host-ip {h} is not in --ip's subnet {}/{}",
                    ip.network(),
                    ip.prefix
                ));
            }
        }
        if let Some(b) = bridge {
            if b.is_empty() || b.len() > 15 || b.contains('/') {
                return Err(format!("--bridge '{b}' is not an interface name"));
            }
        }
        Ok(VethPlan {
            ip,
            host_ip,
            bridge: bridge.map(str::to_string),
        })
    }
}

/// The host end's name: `veth` and the container's PID as the host sees it.
pub fn host_name(pid: i32) -> String {
    format!("veth{pid}")
}

/// A veth pair in place; dropping it deletes the host end (and so the pair).
#[derive(Debug)]
pub struct Veth {
    host_name: String,
    explain: Explain,
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Usually already gone with the container's namespace: ENODEV is fine.
        let _ = delete_link(&self.host_name, self.explain);
    }
}

/// Delete a link by name (`ip link del NAME`); `Ok(false)` when it did not exist.
pub fn delete_link(name: &str, explain: Explain) -> Result<bool, Error> {
    let mut rtnl = Rtnl::open()?;
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    explain.call(format!("RTM_DELLINK {name}"), format!("ip link del {name}"));
    match rtnl.request(RouteNetlinkMessage::DelLink(msg), 0) {
        Ok(_) => Ok(true),
        Err(Errno::ENODEV) => Ok(false),
        Err(e) => Err(Error::sys(format!("ip link del {name}"), e)),
    }
}

/// Build the cable for the container whose first process is `pid` (its
/// network namespace must be new, and it must not have started its command).
pub fn setup(plan: &VethPlan, pid: i32, explain: Explain) -> Result<Veth, Error> {
    let name = host_name(pid);
    let mut host = Rtnl::open()?;

    let bridge = match &plan.bridge {
        Some(b) => Some(host.link_index(b)?.ok_or_else(|| {
            Error::Invalid(format!("--bridge '{b}': no such interface on the host"))
        })?),
        None => None,
    };
    // The kernel would happily put one address on two interfaces: refuse.
    let in_use = host.addresses()?;
    let mut ours = vec![plan.ip.addr];
    if bridge.is_none() {
        ours.extend(plan.host_ip.map(|h| h.addr));
    }
    for (addr, index) in &in_use {
        if ours.contains(addr) {
            let ifname = host
                .link_name(*index)
                .unwrap_or_else(|| format!("interface {index}"));
            return Err(Error::Invalid(format!(
                "address {addr} is already in use on the host ({ifname})"
            )));
        }
    }
    let gateway = match (plan.host_ip, bridge) {
        (Some(h), _) => h.addr,
        (None, Some(index)) => in_use
            .iter()
            .find(|(addr, i)| *i == index && plan.ip.contains(*addr))
            .map(|(addr, _)| *addr)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "--bridge '{}' has no address in {}/{}; give the gateway with --host-ip",
                    plan.bridge.as_deref().unwrap_or(""),
                    plan.ip.network(),
                    plan.ip.prefix
                ))
            })?,
        (None, None) => plan.ip.first_host().addr,
    };

    // ip link add vethPID type veth peer name eth0 netns PID
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName("eth0".to_string()));
    peer.attributes.push(LinkAttribute::NetNsPid(pid as u32));
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(name.clone()));
    link.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    explain.call(
        format!("RTM_NEWLINK {name} type veth, peer eth0 in the netns of {pid}"),
        format!("ip link add {name} type veth peer name eth0 netns {pid}"),
    );
    host.request(
        RouteNetlinkMessage::NewLink(link),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(|e| {
        Error::sys(
            format!("ip link add {name} type veth peer name eth0 netns {pid}"),
            e,
        )
    })?;
    let veth = Veth {
        host_name: name.clone(),
        explain,
    };
    let index = host
        .link_index(&name)?
        .ok_or_else(|| Error::Invalid(format!("the new link {name} vanished")))?;
    match bridge {
        Some(bridge_index) => {
            let b = plan.bridge.as_deref().unwrap_or("");
            explain.call(
                format!("RTM_NEWLINK {name} IFLA_MASTER={bridge_index}"),
                format!("ip link set {name} master {b}"),
            );
            let mut msg = link_by_index(index);
            msg.attributes.push(LinkAttribute::Controller(bridge_index));
            host.request(RouteNetlinkMessage::SetLink(msg), 0)
                .map_err(|e| Error::sys(format!("ip link set {name} master {b}"), e))?;
        }
        None => {
            if let Some(h) = plan.host_ip {
                host.add_address(index, h, &name, explain)?;
            }
        }
    }
    host.set_up(index, &name, explain)?;

    // The container's side, through a socket made in its namespace.
    let mut inside = Rtnl::open_in_netns_of(pid)?;
    let eth0 = inside
        .link_index("eth0")?
        .ok_or_else(|| Error::Invalid("eth0 did not arrive in the container".to_string()))?;
    inside.add_address(eth0, plan.ip, "eth0", explain)?;
    inside.set_up(eth0, "eth0", explain)?;
    let mut route = RouteMessage::default();
    route.header = RouteHeader {
        address_family: AddressFamily::Inet,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    route
        .attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    route.attributes.push(RouteAttribute::Oif(eth0));
    explain.call(
        format!("RTM_NEWROUTE 0.0.0.0/0 via {gateway} dev eth0 (in the container)"),
        format!("ip route add default via {gateway}"),
    );
    inside
        .request(
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| Error::sys(format!("ip route add default via {gateway}"), e))?;
    Ok(veth)
}

fn link_by_index(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// A route netlink socket, used synchronously: one request, its answers, an ACK.
struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Rtnl, Error> {
        let failed =
            |e: std::io::Error| Error::sys("socket(AF_NETLINK, NETLINK_ROUTE)", io_errno(&e));
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(failed)?;
        socket.bind_auto().map_err(failed)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(failed)?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// A socket in the network namespace of `pid`: setns there, socket(),
    /// setns back. nsenter-run is single-threaded, so nothing else runs meanwhile.
    fn open_in_netns_of(pid: i32) -> Result<Rtnl, Error> {
        let open = |path: String| -> Result<OwnedFd, Error> {
            nix::fcntl::open(
                path.as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::sys(format!("open {path}"), e))
        };
        let own = open("/proc/self/ns/net".to_string())?;
        let theirs = open(format!("/proc/{pid}/ns/net"))?;
        setns(&theirs, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys(format!("setns(/proc/{pid}/ns/net)"), e))?;
        let rtnl = Rtnl::open();
        setns(&own, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys("setns back to the host's network namespace", e))?;
        rtnl
    }

    /// Send one request and collect the replies until its ACK (or the end of a dump).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Errno> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| io_errno(&e))?;

        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(|e| io_errno(&e))?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|_| Errno::EBADMSG)?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(replies),
                                Some(code) => Err(Errno::from_raw(-code.get())),
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// `ip link show NAME`: its index, or None.
    fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(Errno::ENODEV) => Ok(None),
            Err(e) => Err(Error::sys(format!("ip link show {name}"), e)),
        }
    }

    fn link_name(&mut self, index: u32) -> Option<String> {
        let replies = self
            .request(RouteNetlinkMessage::GetLink(link_by_index(index)), 0)
            .ok()?;
        replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }),
            _ => None,
        })
    }

    /// `ip -4 addr show`: every IPv4 address and its interface index.
    fn addresses(&mut self) -> Result<Vec<(Ipv4Addr, u32)>, Error> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self
            .request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)
            .map_err(|e| Error::sys("ip -4 addr show", e))?;
        let mut found = Vec::new();
        for reply in replies {
            if let RouteNetlinkMessage::NewAddress(a) = reply {
                for attr in a.attributes {
                    if let AddressAttribute::Local(IpAddr::V4(v4)) = attr {
                        found.push((v4, a.header.index));
                    }
                }
            }
        }
        Ok(found)
    }

    /// `ip addr add CIDR dev NAME`.
    fn add_address(
        &mut self,
        index: u32,
        cidr: Cidr,
        name: &str,
        explain: Explain,
    ) -> Result<(), Error> {
        let mut msg = AddressMessage::default();
        msg.header = AddressHeader {
            family: AddressFamily::Inet,
            prefix_len: cidr.prefix,
            scope: AddressScope::Universe,
            index,
            ..AddressHeader::default()
        };
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(cidr.addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(cidr.addr)));
        let broadcast = Ipv4Addr::from(
            u32::from(cidr.network()) | !(u32::MAX << (32 - u32::from(cidr.prefix))),
        );
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        explain.call(
            format!("RTM_NEWADDR {cidr} dev {name}"),
            format!("ip addr add {cidr} dev {name}"),
        );
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|e| Error::sys(format!("ip addr add {cidr} dev {name}"), e))
    }

    /// `ip link set NAME up`.
    fn set_up(&mut self, index: u32, name: &str, explain: Explain) -> Result<(), Error> {
        let mut msg = link_by_index(index);
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        explain.call(
            format!("RTM_NEWLINK {name} IFF_UP"),
            format!("ip link set {name} up"),
        );
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
            .map(drop)
            .map_err(|e| Error::sys(format!("ip link set {name} up"), e))
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_know_their_subnet() {
        let c = Cidr::parse("10.200.0.2/24").unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 200, 0, 0));
        assert_eq!(c.first_host().to_string(), "10.200.0.1/24");
        assert!(c.contains(Ipv4Addr::new(10, 200, 0, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 200, 1, 1)));
        for bad in [
            "10.200.0.2",
            "10.200.0.300/24",
            "10.200.0.2/33",
            "10.200.0.2/31",
            "x/24",
            "10.200.0.2/",
        ] {
            assert!(Cidr::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn the_host_end_defaults_to_the_first_address() {
        let p = VethPlan::new("10.200.0.2/24", None, None).unwrap();
        assert_eq!(p.host_ip, Some(Cidr::parse("10.200.0.1/24").unwrap()));
        assert!(VethPlan::new("10.200.0.1/24", None, None)
            .unwrap_err()
            .contains("--host-ip"));
    }

    #[test]
    fn addresses_must_share_a_subnet_and_be_hosts() {
        assert!(VethPlan::new("10.200.0.2/24", Some("10.201.0.1/24"), None)
            .unwrap_err()
            .contains("not in"));
        assert!(VethPlan::new("10.200.0.0/24", None, None)
            .unwrap_err()
            .contains("network or broadcast"));
        assert!(VethPlan::new("10.200.0.255/24", None, None)
            .unwrap_err()
            .contains("network or broadcast"));
    }

    #[test]
    fn a_bridge_needs_no_host_address() {
        let p = VethPlan::new("10.200.0.2/24", None, Some("br0")).unwrap();
        assert_eq!(p.host_ip, None);
        assert!(VethPlan::new("10.200.0.2/24", None, Some("a/b")).is_err());
        assert_eq!(host_name(4242), "veth4242");
    }
}
