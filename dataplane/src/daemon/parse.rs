//! Reading a control request line without buffering it whole.
//!
//! `Request` is tagged by its `cmd` field; serde's derived reader does not know where the
//! tag is, so it first copies the whole object into an intermediate tree and reads the
//! request from that — for a full sync (a `batch` of 10k `add-service`), every change twice
//! over. Clients write `cmd` first (serde does), so here the tag is read first and `batch`
//! and `add-service` are read straight from the line; any other request, or a `cmd` that
//! comes later, goes through the derived reader as before.

use super::protocol::Request;
use crate::config::services::Service;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses one request line. The line is checked to be UTF-8 once, whole (reading from
/// bytes checks each string on its own, a tenth of a full sync's parse).
pub fn request(line: &[u8]) -> Result<Request, serde_json::Error> {
    match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str::<Fast>(text).map(|f| f.0),
        Err(_) => serde_json::from_slice::<Fast>(line).map(|f| f.0),
    }
}

struct Fast(Request);

impl<'de> Deserialize<'de> for Fast {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastVisitor)
    }
}

struct FastVisitor;

impl<'de> Visitor<'de> for FastVisitor {
    type Value = Fast;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request object with a \"cmd\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fast, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field("cmd"));
        };
        let value: Value = if first == "cmd" {
            let cmd: String = map.next_value()?;
            match cmd.as_str() {
                "batch" => return batch(map),
                "add-service" => return add_service(map),
                _ => Value::String(cmd),
            }
        } else {
            map.next_value()?
        };
        let mut obj = Map::new();
        obj.insert(first, value);
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            if obj.contains_key(&k) {
                return Err(de::Error::custom(format_args!("duplicate field `{k}`")));
            }
            obj.insert(k, v);
        }
        Request::deserialize(Value::Object(obj))
            .map(Fast)
            .map_err(de::Error::custom)
    }
}

/// The only field of a request after its `cmd`, read as `T`.
fn only_field<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    mut map: A,
    fields: &'static [&'static str; 1],
) -> Result<T, A::Error> {
    let name = fields[0];
    let mut v: Option<T> = None;
    while let Some(k) = map.next_key::<String>()? {
        if k != name {
            return Err(de::Error::unknown_field(&k, fields));
        }
        if v.is_some() {
            return Err(de::Error::duplicate_field(name));
        }
        v = Some(map.next_value()?);
    }
    v.ok_or_else(|| de::Error::missing_field(name))
}

fn batch<'de, A: MapAccess<'de>>(map: A) -> Result<Fast, A::Error> {
    let changes: Vec<Fast> = only_field(map, &["changes"])?;
    Ok(Fast(Request::Batch {
        changes: changes.into_iter().map(|f| f.0).collect(),
    }))
}

fn add_service<'de, A: MapAccess<'de>>(map: A) -> Result<Fast, A::Error> {
    let service: Service = only_field(map, &["service"])?;
    Ok(Fast(Request::AddService { service }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request the fast reader takes reads as the derived reader reads it, and what
    /// the derived reader refuses is refused too.
    #[test]
    fn same_requests_as_the_derived_reader() {
        let svc = r#"{"namespace":"a","name":"b","cluster_ip":"10.96.0.9","ports":[{"protocol":"tcp","port":80}],"endpoints":[{"ip":"10.244.1.5"}]}"#;
        let good = [
            format!(r#"{{"cmd":"add-service","service":{svc}}}"#),
            format!(r#"{{"service":{svc},"cmd":"add-service"}}"#),
            format!(
                r#"{{"cmd":"batch","changes":[{{"cmd":"add-service","service":{svc}}},{{"cmd":"remove-service","namespace":"a","name":"c"}}]}}"#
            ),
            r#"{"cmd":"dump","table":"fib"}"#.to_string(),
            r#"{"table":"fib","cmd":"dump"}"#.to_string(),
            r#"{"cmd":"version"}"#.to_string(),
            r#"{"cmd":"batch","changes":[]}"#.to_string(),
        ];
        for line in &good {
            let want = serde_json::from_str::<Request>(line).expect("derived reader");
            let got = request(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(
                serde_json::to_value(&got).expect("json"),
                serde_json::to_value(&want).expect("json"),
                "{line}"
            );
        }
        let bad = [
            r#"{"cmd":"add-service"}"#.to_string(),
            format!(r#"{{"cmd":"add-service","service":{svc},"extra":1}}"#),
            format!(r#"{{"cmd":"add-service","service":{svc},"service":{svc}}}"#),
            r#"{"cmd":"batch","changes":[{"cmd":"nope"}]}"#.to_string(),
            r#"{"cmd":"batch"}"#.to_string(),
            r#"{"cmd":"dump","table":"fib","table":"ports"}"#.to_string(),
            r#"{"cmd":"dump","table":"fib","extra":1}"#.to_string(),
            r#"{"cmd":"nope"}"#.to_string(),
            r#"{}"#.to_string(),
            r#"[1]"#.to_string(),
            r#"{"cmd":"add-service","service":{"name":1}}"#.to_string(),
        ];
        for line in &bad {
            assert!(
                serde_json::from_str::<Request>(line).is_err(),
                "derived reader takes {line}"
            );
            assert!(
                request(line.as_bytes()).is_err(),
                "fast reader takes {line}"
            );
        }
    }
}
