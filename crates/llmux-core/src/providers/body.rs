//! What every typed wire body shares: the request's `extra` fields laid over its typed fields.
//!
//! A provider's request body is a `Serialize` struct in its `wire` module: optional fields are
//! skipped when unset, and the last field is `#[serde(flatten)] extra: Map<String, Value>`.
//! [`Extra`] decides, field by field, whether a typed value is sent: a key of `extra` that names
//! a typed field wins (its value is sent instead, among the flattened fields), and a `null`
//! removes the field altogether, as `ChatRequest::extra` documents. No key is ever sent twice.

use serde_json::{Map, Value};

/// A request's vendor fields, as laid over one typed body (or one nested object of it).
#[derive(Debug, Clone, Copy)]
pub struct Extra<'a> {
    fields: &'a Map<String, Value>,
}

impl<'a> Extra<'a> {
    /// The vendor fields of one body level.
    pub fn new(fields: &'a Map<String, Value>) -> Self {
        Extra { fields }
    }

    /// The typed value of field `key`, or `None` when `extra` names the field (it then sends
    /// its own value, or removes the field with `null`).
    pub fn typed<T>(&self, key: &str, value: Option<T>) -> Option<T> {
        if self.fields.contains_key(key) {
            None
        } else {
            value
        }
    }

    /// Whether `extra` names `key` (with a value or `null`).
    pub fn names(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// The value `extra` gives `key`: `Some(None)` when it removes the field with `null`.
    pub fn get(&self, key: &str) -> Option<Option<&'a Value>> {
        self.fields
            .get(key)
            .map(|v| if v.is_null() { None } else { Some(v) })
    }

    /// The fields to flatten into the body: every entry but the removals (`null`), and but
    /// `except`, keys a provider reads itself (such as a nested object it merges field by field).
    pub fn fields(&self, except: &[&str]) -> Map<String, Value> {
        self.fields
            .iter()
            .filter(|(k, v)| !v.is_null() && !except.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    #[derive(Serialize)]
    struct Body {
        model: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        temperature: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        top_p: Option<f64>,
        #[serde(flatten)]
        extra: Map<String, Value>,
    }

    fn body(extra: Value) -> Value {
        let Value::Object(extra) = extra else {
            unreachable!()
        };
        let ex = Extra::new(&extra);
        serde_json::to_value(Body {
            model: "m",
            temperature: ex.typed("temperature", Some(0.5)),
            top_p: ex.typed("top_p", Some(0.9)),
            extra: ex.fields(&[]),
        })
        .unwrap()
    }

    #[test]
    fn extra_replaces_or_removes_a_typed_field_and_adds_the_rest() {
        assert_eq!(
            body(json!({})),
            json!({"model": "m", "temperature": 0.5, "top_p": 0.9})
        );
        assert_eq!(
            body(json!({"temperature": 1, "top_p": null, "vendor": {"x": 1}})),
            json!({"model": "m", "temperature": 1, "vendor": {"x": 1}})
        );
        // Serialized once: a replaced field is never sent twice.
        let Value::Object(extra) = json!({"temperature": 1}) else {
            unreachable!()
        };
        let ex = Extra::new(&extra);
        let bytes = serde_json::to_string(&Body {
            model: "m",
            temperature: ex.typed("temperature", Some(0.5)),
            top_p: None,
            extra: ex.fields(&[]),
        })
        .unwrap();
        assert_eq!(bytes, r#"{"model":"m","temperature":1}"#);
        assert_eq!(ex.get("temperature"), Some(Some(&json!(1))));
        assert!(ex.names("temperature") && !ex.names("top_p"));
    }
}
