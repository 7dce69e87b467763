//! Kubernetes label selectors (matchLabels and matchExpressions), checked once and matched
//! many times, with a canonical text form that names the address sets they produce.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

/// A validated selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    exprs: Vec<(String, Op)>,
}

impl Selector {
    /// Checks `s` as the API server does (operators, values present or not).
    pub fn parse(s: &LabelSelector) -> Result<Selector, String> {
        let mut out = Selector {
            labels: s.match_labels.clone().unwrap_or_default(),
            exprs: Vec::new(),
        };
        for e in s.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            let op = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "matchExpressions {:?} {}: values must not be empty",
                        e.key, e.operator
                    ));
                }
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "matchExpressions {:?} {}: values must be empty",
                        e.key, e.operator
                    ));
                }
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(format!(
                        "matchExpressions {:?}: unknown operator {other:?}",
                        e.key
                    ));
                }
            };
            out.exprs.push((e.key.clone(), op));
        }
        out.exprs
            .sort_by(|a, b| a.0.cmp(&b.0).then(canon_op(&a.1).cmp(&canon_op(&b.1))));
        out.exprs.dedup();
        Ok(out)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|(k, op)| match op {
                Op::In(vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                Op::NotIn(vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                Op::Exists => labels.contains_key(k),
                Op::DoesNotExist => !labels.contains_key(k),
            })
    }

    /// One text per meaning (the order of terms does not matter): `{a=1,b in (x,y)}`.
    pub fn canonical(&self) -> String {
        let mut terms: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        terms.extend(
            self.exprs
                .iter()
                .map(|(k, op)| format!("{k} {}", canon_op(op))),
        );
        format!("{{{}}}", terms.join(","))
    }
}

fn canon_op(op: &Op) -> String {
    let list = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
    match op {
        Op::In(vs) => format!("in ({})", list(vs)),
        Op::NotIn(vs) => format!("notin ({})", list(vs)),
        Op::Exists => "exists".into(),
        Op::DoesNotExist => "!exists".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: serde_json::Value) -> Result<Selector, String> {
        Selector::parse(&serde_json::from_value(v).map_err(|e| e.to_string())?)
    }

    fn labels(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators() {
        let s = sel(json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"}]}))
        .unwrap();
        let ok = labels(&[("app", "web"), ("tier", "b"), ("team", "x")]);
        assert!(s.matches(&ok));
        let mut l = ok.clone();
        l.insert("env".into(), "prod".into());
        assert!(!s.matches(&l));
        let mut l = ok.clone();
        l.insert("legacy".into(), "".into());
        assert!(!s.matches(&l));
        let mut l = ok.clone();
        l.remove("team");
        assert!(!s.matches(&l));
        let mut l = ok;
        l.insert("tier".into(), "c".into());
        assert!(!s.matches(&l));
        assert!(sel(json!({})).unwrap().matches(&BTreeMap::new()));
    }

    #[test]
    fn canonical_ignores_order_and_bad_ones_are_named() {
        let a = sel(json!({"matchExpressions": [
            {"key": "b", "operator": "In", "values": ["y", "x"]},
            {"key": "a", "operator": "Exists"}]}))
        .unwrap();
        let b = sel(json!({"matchExpressions": [
            {"key": "a", "operator": "Exists"},
            {"key": "b", "operator": "In", "values": ["x", "y"]}]}))
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let e = sel(json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})).unwrap_err();
        assert!(e.contains("unknown operator \"Near\""), "{e}");
        let e = sel(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).unwrap_err();
        assert!(e.contains("values must not be empty"), "{e}");
    }
}
