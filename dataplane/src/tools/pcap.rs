//! Reading pcap/pcapng captures (with interface names) and writing per-port pcap files,
//! through the `pcap-file` crate.

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

/// One captured frame: when, on which interface (pcapng `if_name`), and its bytes.
pub struct Captured {
    pub ts: Duration,
    pub if_name: Option<String>,
    pub data: Vec<u8>,
}

/// Reads every frame of a pcap or pcapng file.
pub fn read(path: &Path) -> Result<Vec<Captured>, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let r = BufReader::new(f);
    let err = |e: pcap_file::PcapError| format!("{}: {e}", path.display());
    let mut out = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut rd = PcapNgReader::new(r).map_err(err)?;
        let mut names: Vec<Option<String>> = Vec::new();
        while let Some(b) = rd.next_block() {
            match b.map_err(err)? {
                Block::InterfaceDescription(idb) => {
                    let name = idb.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    });
                    names.push(name);
                }
                Block::EnhancedPacket(p) => out.push(Captured {
                    ts: p.timestamp,
                    if_name: names.get(p.interface_id as usize).cloned().flatten(),
                    data: p.data.into_owned(),
                }),
                Block::SimplePacket(p) => out.push(Captured {
                    ts: Duration::ZERO,
                    if_name: names.first().cloned().flatten(),
                    data: p.data.into_owned(),
                }),
                _ => {}
            }
        }
    } else {
        let mut rd = PcapReader::new(r).map_err(err)?;
        while let Some(p) = rd.next_packet() {
            let p = p.map_err(err)?;
            out.push(Captured {
                ts: p.timestamp,
                if_name: None,
                data: p.data.into_owned(),
            });
        }
    }
    Ok(out)
}

/// Writes frames as a classic Ethernet pcap file.
pub fn write(path: &Path, frames: &[(Duration, Vec<u8>)]) -> Result<(), String> {
    let f = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let err = |e: pcap_file::PcapError| format!("{}: {e}", path.display());
    let mut w = PcapWriter::new(BufWriter::new(f)).map_err(err)?;
    for (ts, d) in frames {
        w.write_packet(&PcapPacket::new(*ts, d.len() as u32, d))
            .map_err(err)?;
    }
    Ok(())
}
