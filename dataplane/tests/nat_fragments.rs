//! Fragmented datagrams through Service NAT and masquerade (virtual reassembly): every
//! fragment leaves translated, and the fragments that leave reassemble, in the test, into a
//! datagram whose UDP checksum is valid. Out of order, mixed ids, a full fragment table,
//! expiry and malformed fragments.

mod support;
use podswitch::pipeline::Event;
use podswitch::pipeline::frag_table::{HOLD_PER_DATAGRAM, SETS, WAYS};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// Splits the IPv4 packet of `frame` into fragments of `chunk` payload bytes (a multiple of
/// 8) with IP identification `id`.
fn fragments(frame: &[u8], id: u16, chunk: usize) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    let hl = usize::from(ip[0] & 15) * 4;
    let payload = &ip[hl..];
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(k, c)| {
            let off = k * chunk;
            let last = off + c.len() == payload.len();
            raw(eth, &ip[..hl], id, off / 8, !last, c)
        })
        .collect()
}

/// A fragment: `hdr` (an IPv4 header) with the given id, offset (8-byte units), MF and
/// payload; lengths and checksum filled in.
fn raw(eth: &[u8], hdr: &[u8], id: u16, off8: usize, mf: bool, payload: &[u8]) -> Vec<u8> {
    let mut h = hdr.to_vec();
    let total = (h.len() + payload.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let ff = (off8 as u16) | if mf { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&ff.to_be_bytes());
    h[10..12].fill(0);
    let c = csum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut v = eth.to_vec();
    v.extend_from_slice(&h);
    v.extend_from_slice(payload);
    v
}

/// A UDP datagram of 3000 bytes (header included) with a payload pattern from `seed`.
fn big_udp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seed: u8,
) -> Vec<u8> {
    let payload: Vec<u8> = (0..2992u32)
        .map(|k| (k as u8).wrapping_mul(7) ^ seed)
        .collect();
    udp(smac, dmac, src, dst, sport, dport, &payload)
}

/// The IPv4 packet of an output frame, without Ethernet and VXLAN.
fn ip_of(frame: &[u8]) -> &[u8] {
    let ip = &frame[14..];
    if ip[9] == 17 && u16::from_be_bytes([ip[22], ip[23]]) == 8472 {
        assert_eq!(csum(&ip[..20], 0), 0, "outer IPv4 checksum");
        return &frame[50 + 14..];
    }
    ip
}

#[derive(Debug)]
struct Datagram {
    port: String,
    src: [u8; 4],
    dst: [u8; 4],
    /// The whole L4 datagram.
    l4: Vec<u8>,
}

impl Datagram {
    fn ports(&self) -> (u16, u16) {
        (
            u16::from_be_bytes([self.l4[0], self.l4[1]]),
            u16::from_be_bytes([self.l4[2], self.l4[3]]),
        )
    }
    /// Asserts that the UDP length and checksum of the reassembled datagram are right.
    fn assert_udp_ok(&self) {
        assert_eq!(
            usize::from(u16::from_be_bytes([self.l4[4], self.l4[5]])),
            self.l4.len()
        );
        assert_ne!(u16::from_be_bytes([self.l4[6], self.l4[7]]), 0);
        assert_eq!(
            csum(&self.l4, pseudo(self.src, self.dst, 17, self.l4.len())),
            0,
            "UDP checksum of the reassembled datagram"
        );
    }
}

/// Source, destination, protocol and IP id.
type DatagramKey = ([u8; 4], [u8; 4], u8, u16);
/// One output fragment: port, offset in bytes, MF, payload.
type Piece = (String, usize, bool, Vec<u8>);

/// Reassembles the output frames: every IPv4 header checksum valid, fragments of one
/// datagram (source, destination, protocol, id) all on one port, contiguous and complete.
fn reassemble(frames: &[(String, Vec<u8>)]) -> Vec<Datagram> {
    let mut groups: BTreeMap<DatagramKey, Vec<Piece>> = BTreeMap::new();
    for (port, f) in frames {
        let ip = ip_of(f);
        let hl = usize::from(ip[0] & 15) * 4;
        assert_eq!(csum(&ip[..hl], 0), 0, "IPv4 header checksum");
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let ff = u16::from_be_bytes([ip[6], ip[7]]);
        let key = (
            ip[12..16].try_into().unwrap(),
            ip[16..20].try_into().unwrap(),
            ip[9],
            u16::from_be_bytes([ip[4], ip[5]]),
        );
        groups.entry(key).or_default().push((
            port.clone(),
            usize::from(ff & 0x1fff) * 8,
            ff & 0x2000 != 0,
            ip[hl..total].to_vec(),
        ));
    }
    groups
        .into_iter()
        .map(|((src, dst, _, id), mut frags)| {
            frags.sort_by_key(|f| f.1);
            let mut l4 = Vec::new();
            for (k, (port, off, mf, data)) in frags.iter().enumerate() {
                assert_eq!(
                    port, &frags[0].0,
                    "datagram {id}: all fragments on one port"
                );
                assert_eq!(*off, l4.len(), "datagram {id}: fragments contiguous");
                assert_eq!(
                    *mf,
                    k + 1 < frags.len(),
                    "datagram {id}: MF on all but the last"
                );
                l4.extend_from_slice(data);
            }
            Datagram {
                port: frags[0].0.clone(),
                src,
                dst,
                l4,
            }
        })
        .collect()
}

fn all_frames(outs: &[Out]) -> Vec<(String, Vec<u8>)> {
    outs.iter().flat_map(|o| o.frames.clone()).collect()
}

fn events(n: &Node, e: Event) -> u64 {
    n.counters().event_count(e)
}

fn drops(n: &Node, name: &str) -> u64 {
    let r = podswitch::pipeline::DropReason::ALL
        .iter()
        .find(|r| r.name() == name)
        .unwrap_or_else(|| panic!("no drop reason {name}"));
    n.counters().drop_count(*r)
}

/// The reply an endpoint sends back, fragmented, on the path the request left by.
fn reply_frags(req: &Datagram, id: u16) -> (&'static str, Vec<Vec<u8>>) {
    let (sport, dport) = req.ports();
    match req.port.as_str() {
        "eth0" => {
            let inner = big_udp(MAC_NODE2, VTEP1, req.dst, req.src, dport, sport, 9);
            let f = fragments(&inner, id, 1400);
            ("eth0", f.iter().map(|f| from_node2(f)).collect())
        }
        "veth-pod-c" => {
            let d = big_udp(MAC_C, MAC_GW, req.dst, req.src, dport, sport, 9);
            ("veth-pod-c", fragments(&d, id, 1400))
        }
        o => panic!("unexpected output port {o}"),
    }
}

#[test]
fn cluster_ip_udp_fragments_in_order_and_the_fragmented_reply() {
    let mut n = Node::new(&config());
    let mut endpoints = std::collections::HashSet::new();
    for sport in 50100..50110u16 {
        let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, sport, 53, 1);
        let frags = fragments(&d, sport, 1400);
        assert_eq!(frags.len(), 3);
        let outs: Vec<Out> = frags.into_iter().map(|f| n.send("veth-pod-a", f)).collect();
        for o in &outs {
            assert_eq!(o.frames.len(), 1, "{o:?}");
        }
        let got = reassemble(&all_frames(&outs));
        assert_eq!(got.len(), 1, "{got:?}");
        let req = &got[0];
        req.assert_udp_ok();
        assert_eq!(req.src, POD_A);
        assert!(req.dst == POD_C || req.dst == POD_D, "{:?}", req.dst);
        assert_eq!(req.ports(), (sport, 53));
        assert_eq!(&req.l4[8..], &d[14 + 20 + 8..], "payload untouched");
        endpoints.insert(req.dst);

        let (port, rf) = reply_frags(req, 1000 + sport);
        let outs: Vec<Out> = rf.into_iter().map(|f| n.send(port, f)).collect();
        let back = reassemble(&all_frames(&outs));
        assert_eq!(back.len(), 1, "{back:?}");
        let r = &back[0];
        r.assert_udp_ok();
        assert_eq!(r.port, "veth-pod-a");
        assert_eq!((r.src, r.dst, r.ports()), (VIP, POD_A, (53, sport)));
    }
    assert_eq!(endpoints.len(), 2, "both endpoints used");
    // Two later fragments per datagram, both ways.
    assert_eq!(events(&n, Event::NatFragmentTranslated), 10 * 2 * 2);
    let p = n.pipeline.as_ref().unwrap();
    assert!(
        p.frag_table().is_empty(n.now_ns()),
        "entries freed once their datagram went through"
    );
    assert_eq!(n.counters().total_drops(), 0);
}

#[test]
fn first_fragment_last_releases_the_held_ones() {
    let mut n = Node::new(&config());
    let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, 50200, 53, 2);
    let f = fragments(&d, 4242, 1400);
    // Separate batches: the later fragments wait.
    for k in [2, 1] {
        let o = n.send("veth-pod-a", f[k].clone());
        assert!(o.frames.is_empty() && o.drops.is_empty(), "{o:?}");
    }
    assert_eq!(events(&n, Event::NatFragmentHeld), 2);
    let o = n.send("veth-pod-a", f[0].clone());
    assert_eq!(o.frames.len(), 3, "{o:?}");
    assert_eq!(events(&n, Event::NatFragmentReleased), 2);
    let got = reassemble(&o.frames);
    assert_eq!(got.len(), 1);
    got[0].assert_udp_ok();
    assert_eq!(got[0].ports(), (50200, 53));

    // One batch, first fragment last.
    let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, 50201, 53, 3);
    let f = fragments(&d, 4243, 1400);
    let o = n.send_batch(vec![
        ("veth-pod-a", f[2].clone()),
        ("veth-pod-a", f[1].clone()),
        ("veth-pod-a", f[0].clone()),
    ]);
    assert!(o.drops.is_empty(), "{o:?}");
    let got = reassemble(&o.frames);
    assert_eq!(got.len(), 1);
    got[0].assert_udp_ok();
    assert_eq!(got[0].ports(), (50201, 53));
    assert_eq!(n.counters().total_drops(), 0);
}

#[test]
fn same_id_from_different_sources_does_not_mix() {
    let mut n = Node::new(&config());
    let a = fragments(&big_udp(MAC_A, MAC_GW, POD_A, VIP, 50300, 53, 4), 77, 1400);
    let c = fragments(&big_udp(MAC_C, MAC_GW, POD_C, VIP, 50300, 53, 5), 77, 1400);
    let mut outs = vec![n.send("veth-pod-a", a[1].clone())];
    assert!(outs[0].frames.is_empty(), "A's second fragment waits");
    for f in &c {
        outs.push(n.send("veth-pod-c", f.clone()));
    }
    assert_eq!(
        all_frames(&outs).len(),
        3,
        "C's datagram does not release A's fragment"
    );
    outs.push(n.send("veth-pod-a", a[0].clone()));
    outs.push(n.send("veth-pod-a", a[2].clone()));
    let got = reassemble(&all_frames(&outs));
    assert_eq!(got.len(), 2, "{got:?}");
    for d in &got {
        d.assert_udp_ok();
        let seed = if d.src == POD_A { 4 } else { 5 };
        assert_eq!(d.l4[8], seed, "payload of its own datagram");
    }
    assert_eq!(n.counters().total_drops(), 0);
}

#[test]
fn unrelated_fragments_pass_without_waiting() {
    let mut n = Node::new(&config());
    // Pod A to pod C directly: no translation can concern it, nothing recorded.
    let f = fragments(
        &big_udp(MAC_A, MAC_GW, POD_A, POD_C, 5000, 6000, 6),
        9,
        1400,
    );
    let o = n.send("veth-pod-a", f[2].clone());
    assert_eq!(o.frames.len(), 1, "{o:?}");
    assert_eq!(o.frames[0].0, "veth-pod-c");
    assert_eq!(events(&n, Event::NatFragmentHeld), 0);
}

#[test]
fn masqueraded_fragments_both_ways() {
    let mut n = Node::new(&config());
    let f = fragments(
        &big_udp(MAC_A, MAC_GW, POD_A, INET, 5353, 5000, 7),
        500,
        1400,
    );
    let outs: Vec<Out> = f.into_iter().map(|f| n.send("veth-pod-a", f)).collect();
    let got = reassemble(&all_frames(&outs));
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &got[0];
    req.assert_udp_ok();
    assert_eq!((req.port.as_str(), req.src, req.dst), ("eth0", NODE, INET));
    let (nat_port, dport) = req.ports();
    assert_eq!(dport, 5000);
    let back = big_udp(MAC_ROUTER, MAC_UPLINK, INET, NODE, 5000, nat_port, 8);
    let outs: Vec<Out> = fragments(&back, 501, 1400)
        .into_iter()
        .map(|f| n.send("eth0", f))
        .collect();
    let got = reassemble(&all_frames(&outs));
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].assert_udp_ok();
    assert_eq!(
        (got[0].port.as_str(), got[0].src, got[0].dst, got[0].ports()),
        ("veth-pod-a", INET, POD_A, (5000, 5353))
    );
}

#[test]
fn full_fragment_table_evicts_and_counts() {
    let mut n = Node::new(&config());
    let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, 50400, 53, 10);
    let cap = SETS * WAYS;
    let ids: Vec<u16> = (0..(2 * cap) as u16).collect();
    let mut sent = 0;
    for chunk in ids.chunks(64) {
        let o = n.send_batch(
            chunk
                .iter()
                .map(|&id| ("veth-pod-a", fragments(&d, id, 1400)[0].clone()))
                .collect(),
        );
        sent += o.frames.len();
    }
    assert_eq!(sent, 2 * cap, "every first fragment translated");
    assert!(events(&n, Event::NatFragmentEvicted) >= cap as u64);
    let p = n.pipeline.as_ref().unwrap();
    assert!(p.frag_table().len(n.now_ns()) <= cap);
    // The newest datagram's later fragment still finds its translation.
    let last = *ids.last().unwrap();
    let o = n.send("veth-pod-a", fragments(&d, last, 1400)[1].clone());
    assert_eq!(o.frames.len(), 1, "{o:?}");
    assert_eq!(n.counters().total_drops(), 0);
}

#[test]
fn held_fragments_are_bounded_and_expire_by_name() {
    let mut n = Node::new(&config());
    let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, 50500, 53, 11);
    let hdr = d[14..34].to_vec();
    for k in 0..HOLD_PER_DATAGRAM {
        let o = n.send("veth-pod-a", raw(&d[..14], &hdr, 31, 1 + k, true, &[0; 8]));
        assert!(o.frames.is_empty() && o.drops.is_empty(), "{o:?}");
    }
    n.send("veth-pod-a", raw(&d[..14], &hdr, 31, 100, true, &[0; 8]))
        .dropped("nat_fragment_unknown");
    n.now += Duration::from_secs(3);
    n.send(
        "veth-pod-a",
        udp(MAC_A, MAC_GW, POD_A, VIP, 50501, 53, b"q"),
    )
    .one();
    assert_eq!(drops(&n, "nat_fragment_expired"), HOLD_PER_DATAGRAM as u64);
}

#[test]
fn malformed_and_tiny_fragments_are_dropped_by_name() {
    let mut n = Node::new(&config());
    let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, 50600, 53, 12);
    let (eth, hdr) = (&d[..14], d[14..34].to_vec());
    // Ends past 65535 bytes.
    n.send("veth-pod-a", raw(eth, &hdr, 1, 8190, false, &[0; 16]))
        .dropped("ip4_bad_fragment");
    // No payload, first or later.
    n.send("veth-pod-a", raw(eth, &hdr, 2, 0, true, &[]))
        .dropped("ip4_bad_fragment");
    n.send("veth-pod-a", raw(eth, &hdr, 3, 100, false, &[]))
        .dropped("ip4_bad_fragment");
    // A TCP first fragment of 8 bytes cannot carry the TCP header: dropped, and so is the
    // rest of its datagram.
    let t = tcp(MAC_A, MAC_GW, POD_A, VIP, 40000, 80, SYN, 1, 0, &[0; 40]);
    let (teth, thdr) = (&t[..14], &t[14..34]);
    n.send("veth-pod-a", raw(teth, thdr, 4, 0, true, &t[34..42]))
        .dropped("nat_fragment");
    n.send("veth-pod-a", raw(teth, thdr, 4, 1, false, &t[42..]))
        .dropped("nat_fragment_head_dropped");
}

#[test]
fn fragments_of_a_rejected_datagram_are_dropped() {
    let mut cfg = config();
    let dns = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "kube-dns")
        .unwrap();
    dns.endpoints.clear();
    let mut n = Node::new(&cfg);
    let f = fragments(&big_udp(MAC_A, MAC_GW, POD_A, VIP, 50700, 53, 13), 5, 1400);
    // The first fragment is answered with ICMP port unreachable.
    let (port, p) = n.send("veth-pod-a", f[0].clone()).one();
    assert_eq!(
        (port.as_str(), p.icmp_type, p.icmp_code),
        ("veth-pod-a", 3, 3)
    );
    n.send("veth-pod-a", f[1].clone())
        .dropped("nat_fragment_head_dropped");
}

/// A same-node endpoint (pod C) answers the client (pod A) on its own subnet: the
/// fragmented reply is addressed to pod A's MAC, i.e. bridged, and its later fragments carry
/// no ports for l2-fwd's conntrack check. Every fragment must still leave translated from
/// the VIP, also when all of them arrive in one batch with the first.
#[test]
fn bridged_fragmented_reply_from_a_same_node_endpoint_is_translated() {
    let mut n = Node::new(&config());
    let mut checked = 0;
    for sport in 50700..50720u16 {
        let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, sport, 53, 13);
        let outs: Vec<Out> = fragments(&d, sport, 1400)
            .into_iter()
            .map(|f| n.send("veth-pod-a", f))
            .collect();
        let got = reassemble(&all_frames(&outs));
        if got[0].dst != POD_C {
            continue; // the remote endpoint: covered above
        }
        let reply = big_udp(MAC_C, MAC_A, POD_C, POD_A, 53, sport, 14);
        let rf: Vec<(&str, Vec<u8>)> = fragments(&reply, 2000 + sport, 1400)
            .into_iter()
            .map(|f| ("veth-pod-c", f))
            .collect();
        let back = reassemble(&n.send_batch(rf).frames);
        assert_eq!(back.len(), 1, "one datagram: {back:?}");
        let r = &back[0];
        r.assert_udp_ok();
        assert_eq!(r.port, "veth-pod-a");
        assert_eq!((r.src, r.dst, r.ports()), (VIP, POD_A, (53, sport)));
        checked += 1;
    }
    assert!(checked > 0, "no request reached the same-node endpoint");
    assert_eq!(n.counters().total_drops(), 0);
}

/// Plain pod-to-pod fragments on one node, sent straight to the peer's MAC by a pod that is
/// a Service endpoint, while conntrack holds flows: nothing to translate, and nothing may
/// be held or lost, whether the fragments share a batch or come one by one.
#[test]
fn same_node_fragments_between_pods_pass_while_conntrack_holds_flows() {
    let mut n = Node::new(&config());
    // A flow in conntrack (pod A -> the VIP), so l2-fwd consults it.
    n.send(
        "veth-pod-a",
        udp(MAC_A, MAC_GW, POD_A, VIP, 40000, 53, b"q"),
    );
    assert!(!n.ct().is_empty());
    for (k, together) in [(0u16, true), (1, false)] {
        let d = big_udp(MAC_C, MAC_A, POD_C, POD_A, 7000 + k, 8000, 15);
        let frags = fragments(&d, 3000 + k, 1400);
        let frames = if together {
            n.send_batch(frags.into_iter().map(|f| ("veth-pod-c", f)).collect())
                .frames
        } else {
            frags
                .into_iter()
                .flat_map(|f| n.send("veth-pod-c", f).frames)
                .collect()
        };
        let got = reassemble(&frames);
        assert_eq!(got.len(), 1, "together={together}: {got:?}");
        let r = &got[0];
        r.assert_udp_ok();
        assert_eq!(r.port, "veth-pod-a");
        assert_eq!((r.src, r.dst, r.ports()), (POD_C, POD_A, (7000 + k, 8000)));
    }
    assert_eq!(n.counters().total_drops(), 0);
}

/// Held fragments remember the snapshot their input port belongs to: released after a
/// publish (which may renumber ports), they are dropped by name instead of being sent on
/// with a port id of the old tables.
#[test]
fn held_fragments_do_not_outlive_a_table_change() {
    let mut n = Node::new(&config());
    let d = big_udp(MAC_A, MAC_GW, POD_A, VIP, 50800, 53, 16);
    let f = fragments(&d, 4343, 1400);
    for k in [2, 1] {
        let o = n.send("veth-pod-a", f[k].clone());
        assert!(o.frames.is_empty() && o.drops.is_empty(), "{o:?}");
    }
    assert_eq!(events(&n, Event::NatFragmentHeld), 2);
    n.publish(&config());
    let o = n.send("veth-pod-a", f[0].clone());
    assert_eq!(o.frames.len(), 1, "only the first fragment leaves: {o:?}");
    assert_eq!(drops(&n, "nat_fragment_tables_changed"), 2);
}
