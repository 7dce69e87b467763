//! Offline use of the pipeline: replay a capture, trace one frame.

pub mod pcap;
pub mod replay;
pub mod trace;

/// Parses a hex string (whitespace, ':' and '-' ignored) into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b':' && *c != b'-')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("hex frame has an odd number of digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            let t = std::str::from_utf8(p).map_err(|_| "hex frame is not ASCII".to_string())?;
            u8::from_str_radix(t, 16).map_err(|_| format!("{t:?} is not a hex byte"))
        })
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
