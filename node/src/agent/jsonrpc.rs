//! Validation of the JSON-RPC 2.0 requests the agent forwards.
//!
//! The request is parsed, checked and re-serialized from its parsed form, so
//! what reaches spdk_tgt is exactly what was checked: no duplicate `method`
//! keys, trailing data or extra members can slip past the allowlist.

use serde_json::{Map, Value};

/// A single, well-formed JSON-RPC 2.0 call.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    /// The method name.
    pub method: String,
    /// Parameters: an object or array, or absent.
    pub params: Option<Value>,
    /// The caller's id (a string or number), echoed back by SPDK.
    pub id: Value,
}

impl RpcRequest {
    /// Parses and validates a request body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
        let Value::Object(mut obj) = value else {
            return Err("a JSON-RPC request must be a single JSON object (no batches)".to_owned());
        };
        match obj.remove("jsonrpc") {
            Some(Value::String(v)) if v == "2.0" => {}
            _ => return Err("`jsonrpc` must be \"2.0\"".to_owned()),
        }
        let method = match obj.remove("method") {
            Some(Value::String(m)) if !m.is_empty() => m,
            _ => return Err("`method` must be a non-empty string".to_owned()),
        };
        let params = match obj.remove("params") {
            None => None,
            Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
            Some(_) => return Err("`params` must be an object or an array".to_owned()),
        };
        let id = match obj.remove("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => id,
            _ => return Err("`id` must be a string or a number".to_owned()),
        };
        if let Some(extra) = obj.keys().next() {
            return Err(format!("unexpected member `{extra}`"));
        }
        Ok(RpcRequest { method, params, id })
    }

    /// The request as sent to spdk_tgt.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("jsonrpc".to_owned(), Value::from("2.0"));
        obj.insert("method".to_owned(), Value::from(self.method.clone()));
        if let Some(p) = &self.params {
            obj.insert("params".to_owned(), p.clone());
        }
        obj.insert("id".to_owned(), self.id.clone());
        Value::Object(obj).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_plain_call_and_round_trips_it() {
        let r = RpcRequest::parse(
            br#"{"jsonrpc":"2.0","method":"bdev_get_bdevs","params":{"name":"a"},"id":7}"#,
        )
        .unwrap();
        assert_eq!(r.method, "bdev_get_bdevs");
        assert_eq!(RpcRequest::parse(&r.to_wire()).unwrap(), r);
    }

    #[test]
    fn duplicate_method_keys_forward_what_was_checked() {
        let r = RpcRequest::parse(
            br#"{"jsonrpc":"2.0","method":"spdk_kill_instance","method":"spdk_get_version","id":1}"#,
        )
        .unwrap();
        let wire: Value = serde_json::from_slice(&r.to_wire()).unwrap();
        assert_eq!(wire["method"], Value::from(r.method.as_str()));
        assert_eq!(
            String::from_utf8(r.to_wire())
                .unwrap()
                .matches("method")
                .count(),
            1
        );
    }

    #[test]
    fn rejects_malformed_requests() {
        for body in [
            &b"not json"[..],
            br#"[{"jsonrpc":"2.0","method":"spdk_get_version","id":1}]"#,
            br#"{"jsonrpc":"1.0","method":"spdk_get_version","id":1}"#,
            br#"{"jsonrpc":"2.0","method":5,"id":1}"#,
            br#"{"jsonrpc":"2.0","method":"spdk_get_version"}"#,
            br#"{"jsonrpc":"2.0","method":"spdk_get_version","id":null}"#,
            br#"{"jsonrpc":"2.0","method":"spdk_get_version","params":3,"id":1}"#,
            br#"{"jsonrpc":"2.0","method":"spdk_get_version","id":1,"x":1}"#,
            br#"{"jsonrpc":"2.0","method":"spdk_get_version","id":1} {}"#,
        ] {
            assert!(
                RpcRequest::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
