//! Tools an agent can call: typed tools whose JSON schema is derived from a Rust type, closures
//! made into tools with [`tool_fn`], and the type-erased [`DynTool`] the loop runs.
//!
//! A typed tool names an argument type that derives `serde::Deserialize` and
//! [`schemars::JsonSchema`]; the schema sent to the model is generated from it (doc comments
//! become descriptions), and the model's JSON arguments are parsed into it before the handler
//! runs. Arguments that do not parse are not a crash: the error goes back to the model as the
//! tool's result, so it can correct itself.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::providers::BoxFuture;
use crate::types::Tool;

/// Why a tool call failed.
///
/// An ordinary error ([`ToolError::new`]) is reported to the model as the call's result
/// (`Error: <message>`) and the loop goes on, so the model can retry or explain. A fatal
/// error ([`ToolError::fatal`]) stops the run with [`AgentError::Tool`](super::AgentError::Tool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    message: String,
    fatal: bool,
}

impl ToolError {
    /// An error the model sees as the call's result.
    pub fn new(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
            fatal: false,
        }
    }

    /// An error that stops the agent run; the other tools of the same step still running are
    /// dropped (cancelled).
    pub fn fatal(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
            fatal: true,
        }
    }

    /// An ordinary error from any error value (its `Display` text).
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        ToolError::new(err.to_string())
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the error stops the run instead of being reported to the model.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ToolError {}

impl From<String> for ToolError {
    fn from(message: String) -> Self {
        ToolError::new(message)
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        ToolError::new(message)
    }
}

/// What a tool returns, turned into the text of the tool-result message.
pub trait ToolOutput: Send {
    /// The content sent back to the model.
    fn into_content(self) -> Result<String, ToolError>;
}

impl ToolOutput for String {
    fn into_content(self) -> Result<String, ToolError> {
        Ok(self)
    }
}

impl ToolOutput for &'static str {
    fn into_content(self) -> Result<String, ToolError> {
        Ok(self.to_owned())
    }
}

impl ToolOutput for Value {
    fn into_content(self) -> Result<String, ToolError> {
        Ok(self.to_string())
    }
}

/// Any serializable value, sent to the model as compact JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: Serialize + Send> ToolOutput for Json<T> {
    fn into_content(self) -> Result<String, ToolError> {
        serde_json::to_string(&self.0)
            .map_err(|e| ToolError::fatal(format!("the tool's output is not JSON: {e}")))
    }
}

/// A tool with typed arguments. The JSON schema of [`TypedTool::Args`] is what the model sees.
///
/// ```
/// use llmux_core::agent::{ToolError, TypedTool};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Current weather for a city.
/// #[derive(Deserialize, JsonSchema)]
/// struct GetWeather {
///     /// The city, as the user wrote it.
///     city: String,
/// }
///
/// struct Weather;
///
/// impl TypedTool for Weather {
///     type Args = GetWeather;
///     type Output = String;
///     fn name(&self) -> &str {
///         "get_weather"
///     }
///     async fn call(&self, args: GetWeather) -> Result<String, ToolError> {
///         Ok(format!("{}: 18 °C, sunny", args.city))
///     }
/// }
/// ```
pub trait TypedTool: Send + Sync + 'static {
    /// The arguments, parsed from the model's JSON; must describe a JSON object (a struct).
    type Args: DeserializeOwned + JsonSchema + Send + 'static;
    /// What the tool returns.
    type Output: ToolOutput;
    /// The function name the model calls (letters, digits, `_` and `-`).
    fn name(&self) -> &str;
    /// What the tool does, for the model. Empty: the doc comment of `Args`, if any.
    fn description(&self) -> &str {
        ""
    }
    /// Runs the tool.
    fn call(
        &self,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + Send;
}

/// A tool as the agent loop sees it: a definition and a call on raw JSON arguments.
///
/// Every [`TypedTool`] is one; implement it directly for tools whose schema is written by hand.
pub trait DynTool: Send + Sync {
    /// The function definition sent to the model (an error when the schema is not usable).
    fn definition(&self) -> Result<Tool>;
    /// Runs the tool on the model's arguments (a JSON string, possibly empty).
    fn invoke<'a>(&'a self, arguments: &'a str) -> BoxFuture<'a, Result<String, ToolError>>;
}

impl<T: TypedTool> DynTool for T {
    fn definition(&self) -> Result<Tool> {
        let mut parameters = parameters_schema::<T::Args>()
            .map_err(|e| Error::invalid_request(format!("tool `{}`: {e}", self.name())))?;
        let mut description = self.description().to_owned();
        if let Some(Value::String(doc)) = parameters.as_object_mut().and_then(|o| {
            o.get("description")
                .filter(|_| description.is_empty())
                .cloned()
        }) {
            description = doc;
        }
        if let Some(o) = parameters.as_object_mut() {
            o.remove("description");
        }
        Ok(Tool {
            name: self.name().to_owned(),
            description: (!description.is_empty()).then_some(description),
            parameters,
            strict: None,
        })
    }

    fn invoke<'a>(&'a self, arguments: &'a str) -> BoxFuture<'a, Result<String, ToolError>> {
        Box::pin(async move {
            let args = parse_arguments::<T::Args>(self.name(), arguments)?;
            self.call(args).await?.into_content()
        })
    }
}

/// Parses a model's JSON arguments; an empty string is `{}`. The error names the tool.
pub fn parse_arguments<A: DeserializeOwned>(tool: &str, arguments: &str) -> Result<A, ToolError> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(text)
        .map_err(|e| ToolError::new(format!("invalid arguments for `{tool}`: {e}")))
}

/// The JSON schema of `A` as function parameters: an object schema with subschemas inlined
/// (references remain only for recursive types), without `$schema` and `title`.
pub fn parameters_schema<A: JsonSchema>() -> Result<Value, String> {
    let schema = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator()
        .into_root_schema_for::<A>();
    let mut value = schema.to_value();
    let Some(o) = value.as_object_mut() else {
        return Err("the arguments type must be a struct (a JSON object schema)".to_owned());
    };
    o.remove("title");
    o.remove("$schema");
    match o.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        other => {
            let got = other.map_or_else(|| "no type".to_owned(), Value::to_string);
            return Err(format!(
                "the arguments type must be a struct (a JSON object schema), got {got}"
            ));
        }
    }
    o.entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    Ok(value)
}

/// A tool made from a name, a description and an async closure over typed arguments
/// (see [`tool_fn`]).
pub struct FnTool<A, F> {
    name: String,
    description: String,
    f: F,
    args: PhantomData<fn(A)>,
}

impl<A, F> fmt::Debug for FnTool<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A tool from an async closure: `tool_fn("get_weather", "Weather for a city", |a: GetWeather|
/// async move { Ok::<_, ToolError>(format!("{}: sunny", a.city)) })`.
pub fn tool_fn<A, O, Fut, F>(
    name: impl Into<String>,
    description: impl Into<String>,
    f: F,
) -> FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: ToolOutput,
    Fut: Future<Output = Result<O, ToolError>> + Send,
    F: Fn(A) -> Fut + Send + Sync + 'static,
{
    FnTool {
        name: name.into(),
        description: description.into(),
        f,
        args: PhantomData,
    }
}

impl<A, O, Fut, F> TypedTool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: ToolOutput,
    Fut: Future<Output = Result<O, ToolError>> + Send,
    F: Fn(A) -> Fut + Send + Sync + 'static,
{
    type Args = A;
    type Output = O;

    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn call(&self, args: A) -> impl Future<Output = Result<O, ToolError>> + Send {
        (self.f)(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// Converts a temperature.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema and parsing are tested")]
    struct Convert {
        /// Degrees Celsius.
        celsius: f64,
        to: Unit,
        note: Option<Inner>,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Unit {
        Fahrenheit,
        Kelvin,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema is tested")]
    struct Inner {
        text: String,
    }

    #[test]
    fn schema_is_an_inlined_object_without_meta_fields() {
        let s = parameters_schema::<Convert>().unwrap();
        assert_eq!(s["type"], "object");
        assert!(s.get("$schema").is_none());
        assert!(s.get("title").is_none());
        assert!(s.get("$defs").is_none(), "{s}");
        assert_eq!(s["properties"]["celsius"]["type"], "number");
        assert_eq!(
            s["properties"]["to"]["enum"],
            json!(["fahrenheit", "kelvin"])
        );
        assert_eq!(
            s["properties"]["celsius"]["description"],
            "Degrees Celsius."
        );
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["celsius", "to"]);
    }

    #[test]
    fn non_object_arguments_are_rejected_with_a_reason() {
        let err = parameters_schema::<String>().unwrap_err();
        assert!(err.contains("must be a struct"), "{err}");
        let err = parameters_schema::<Vec<u8>>().unwrap_err();
        assert!(err.contains("\"array\""), "{err}");
    }

    #[test]
    fn doc_comment_becomes_the_description_unless_one_is_given() {
        let t = tool_fn("convert", "", |_: Convert| async { Ok("x") });
        let def = DynTool::definition(&t).unwrap();
        assert_eq!(def.description.as_deref(), Some("Converts a temperature."));
        assert!(def.parameters.get("description").is_none());
        let t = tool_fn("convert", "Mine.", |_: Convert| async { Ok("x") });
        let def = DynTool::definition(&t).unwrap();
        assert_eq!(def.description.as_deref(), Some("Mine."));
    }

    #[test]
    fn bad_arguments_name_the_tool_and_the_problem() {
        let err = parse_arguments::<Convert>("convert", r#"{"celsius":"hot"}"#).unwrap_err();
        assert!(!err.is_fatal());
        assert!(
            err.message()
                .starts_with("invalid arguments for `convert`: invalid type"),
            "{err}"
        );
        let err = parse_arguments::<Convert>("convert", "").unwrap_err();
        assert!(err.message().contains("missing field"), "{err}");
    }

    #[tokio::test]
    async fn invoke_parses_then_runs_the_handler() {
        #[derive(Deserialize, JsonSchema)]
        struct Empty {}
        let t = tool_fn("ping", "Ping.", |_: Empty| async {
            Ok::<_, ToolError>(Json(json!({"pong": true})))
        });
        assert_eq!(t.invoke("").await.unwrap(), r#"{"pong":true}"#);
        assert_eq!(t.invoke(" {} ").await.unwrap(), r#"{"pong":true}"#);
        assert!(t.invoke("[1]").await.is_err());
    }
}
