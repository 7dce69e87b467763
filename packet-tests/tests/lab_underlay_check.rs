//! The labs' iperf3 underlay check (`tcp_pcap_verdict` in `lab/checks.sh`) over captures
//! built here: VXLAN frames node1 -> node2 carrying a TCP stream pod A -> pod B on the
//! iperf3 port, with correct checksums (etherparse), then with one checksum broken, resends,
//! and an over-MTU frame. The verdict must PASS only the clean captures, so a lab run that
//! reports "bad checksums ip 0 udp 0 tcp 0" has really been looked at. Skips (with a
//! message) when tshark is not installed.

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use podswitch_packet_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const IPERF_PORT: u16 = 5201;
const MSS: usize = 1398;

/// One data segment of the stream at byte `seq` (relative), `len` bytes, as node1 sends it
/// over the underlay. `corrupt` flips bits at an offset of the finished frame (after every
/// checksum was computed) or, for the inner TCP checksum, before the outer UDP one is.
fn segment(seq: u32, len: usize, corrupt: Corrupt) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(VTEP1_MAC, VTEP2_MAC)
        .ipv4(POD_A, POD_B, 64)
        .tcp(40000, IPERF_PORT, 0x1000_0000 + seq, 512)
        .ack(0x2000_0000)
        .write(&mut inner, &pattern(len))
        .unwrap_or_else(|e| panic!("building a segment: {e}"));
    if corrupt == Corrupt::InnerTcp {
        // Inner Ethernet 14 + IPv4 20, TCP checksum at 16.
        inner[14 + 20 + 16] ^= 0x5a;
    }
    let mut f = vxlan_frame(
        UPLINK_MAC,
        NODE2_MAC,
        NODE1,
        NODE2,
        50000,
        VXLAN_PORT,
        vxlan_header(0x08, 1),
        &inner,
    );
    match corrupt {
        // Outer Ethernet 14: IPv4 checksum at 10, UDP checksum at 20 + 6.
        Corrupt::OuterIp => f[14 + 10] ^= 0x5a,
        Corrupt::OuterUdp => f[14 + 20 + 6] ^= 0x5a,
        Corrupt::None | Corrupt::InnerTcp => {}
    }
    f
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Corrupt {
    None,
    InnerTcp,
    OuterUdp,
    OuterIp,
}

/// `n` in-order MSS segments, 10 us apart; `edit` may change the list.
fn stream(n: u32, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = (0..n)
        .map(|k| segment(k * MSS as u32, MSS, Corrupt::None))
        .collect();
    edit(&mut frames);
    frames
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = PcapWriter::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, d) in frames.iter().enumerate() {
        let ts = Duration::from_micros(1_000_000 + 10 * k as u64);
        w.write_packet(&PcapPacket::new(ts, d.len() as u32, d))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("packet-tests/ has a parent")
        .to_path_buf()
}

fn have_tshark() -> bool {
    let ok = Command::new("tshark").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipping: tshark is not installed (Debian package tshark)");
    }
    ok
}

/// The verdict line `STATUS|detail` of `lab/checks.sh` for the capture at `pcap`.
fn verdict_of(pcap: &Path) -> String {
    let out = Command::new("bash")
        .current_dir(repo_root())
        .args([
            "-c",
            "P=psw-test; source lab/topology.sh; source lab/checks.sh; tcp_pcap_verdict \"$1\"",
            "verdict",
        ])
        .arg(pcap)
        .output()
        .expect("bash runs");
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}: bash failed: {v} {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

/// The verdict for these frames, written to a capture file.
fn verdict(name: &str, frames: &[Vec<u8>]) -> String {
    let dir = tempfile::tempdir().expect("temporary folder");
    let pcap = dir.path().join(format!("{name}.pcap"));
    write_pcap(&pcap, frames);
    verdict_of(&pcap)
}

#[test]
fn clean_stream_passes_with_its_counts() {
    if !have_tshark() {
        return;
    }
    let v = verdict("clean", &stream(200, |_| {}));
    assert_eq!(
        v, "PASS|200 segments, 0 resent (0.00 %), bad checksums ip 0 udp 0 tcp 0",
        "clean capture"
    );
}

#[test]
fn each_bad_checksum_fails() {
    if !have_tshark() {
        return;
    }
    for (name, corrupt, want) in [
        ("inner-tcp", Corrupt::InnerTcp, "ip 0 udp 0 tcp 1"),
        ("outer-udp", Corrupt::OuterUdp, "ip 0 udp 1 tcp 0"),
        ("outer-ip", Corrupt::OuterIp, "ip 1 udp 0 tcp 0"),
    ] {
        let v = verdict(
            name,
            &stream(100, |f| f[40] = segment(40 * MSS as u32, MSS, corrupt)),
        );
        assert!(
            v.starts_with("FAIL|") && v.contains(&format!("bad checksums {want}")),
            "{name}: {v}"
        );
    }
}

#[test]
fn resends_count_against_the_threshold() {
    if !have_tshark() {
        return;
    }
    // One resend in 200 segments (0.5 %) passes; three in 100 (3 %) fail the 2 % limit.
    let one = verdict(
        "one-resend",
        &stream(199, |f| {
            f.push(segment(150 * MSS as u32, MSS, Corrupt::None))
        }),
    );
    assert!(
        one.starts_with("PASS|200 segments, 1 resent (0.50 %)"),
        "{one}"
    );
    let three = verdict(
        "three-resends",
        &stream(97, |f| {
            for k in [90, 91, 92] {
                f.push(segment(k * MSS as u32, MSS, Corrupt::None));
            }
        }),
    );
    assert!(
        three.starts_with("FAIL|100 segments, 3 resent (3.00 %)") && three.ends_with("over 2 %"),
        "{three}"
    );
}

#[test]
fn over_mtu_frame_fails() {
    if !have_tshark() {
        return;
    }
    // A super-frame on the underlay (a 1500-byte wire could not carry it), then the stream
    // goes on after it.
    let v = verdict(
        "oversize",
        &stream(50, |f| {
            let next = 50 * MSS as u32;
            f.push(segment(next, 4 * MSS, Corrupt::None));
            f.push(segment(next + 4 * MSS as u32, MSS, Corrupt::None));
        }),
    );
    assert!(
        v.starts_with("FAIL|") && v.ends_with("1 frames > 1514 B"),
        "{v}"
    );
}

#[test]
fn unreadable_capture_fails() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    let pcap = dir.path().join("garbage.pcap");
    std::fs::write(&pcap, b"not a capture").expect("write");
    assert_eq!(verdict_of(&pcap), "FAIL|tshark could not read the capture");
}
