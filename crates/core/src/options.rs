//! `controller.options`: one flat JSON object shared by the engine, the source and the sink.
//!
//! Each part declares the keys it owns and parses them into a typed struct with
//! `deny_unknown_fields`; a key nobody owns is an error naming the known keys,
//! so a typo (`batchsize`) fails loudly instead of being ignored.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The keys of `options` that `keys` names, as a typed struct.
pub fn parse<T: DeserializeOwned>(all: &Map<String, Value>, keys: &[&str]) -> Result<T> {
    let mine: Map<String, Value> =
        all.iter().filter(|(k, _)| keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::from_value(Value::Object(mine)).map_err(|e| Error::user(format!("options: {e}")))
}

/// Fail on any key of `options` that none of `owners` claims.
pub fn check_known(all: &Map<String, Value>, owners: &[&[&str]]) -> Result<()> {
    let unknown: Vec<&str> = all.keys().map(String::as_str).filter(|k| !owners.iter().any(|o| o.contains(k))).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let mut known: Vec<&str> = owners.iter().flat_map(|o| o.iter().copied()).collect();
    known.sort_unstable();
    known.dedup();
    Err(Error::user(format!(
        "options: unknown key{} {}; known keys for this pipeline: {}",
        if unknown.len() > 1 { "s" } else { "" },
        unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Src {
        batch_size: Option<usize>,
    }

    #[test]
    fn splits_and_checks_keys() {
        let all = serde_json::json!({"batch_size": 10, "retries": 3});
        let all = all.as_object().unwrap();
        let src: Src = parse(all, &["batch_size"]).unwrap();
        assert_eq!(src.batch_size, Some(10));
        check_known(all, &[&["batch_size"], &["retries"]]).unwrap();
        let err = check_known(all, &[&["batch_size"]]).unwrap_err();
        assert!(err.to_string().contains("unknown key `retries`"), "{err}");
        let bad = serde_json::json!({"batch_size": "ten"});
        assert!(parse::<Src>(bad.as_object().unwrap(), &["batch_size"]).is_err());
    }
}
