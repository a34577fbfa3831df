//! [`EnvVars`]: the endpoint's environment variables, as the original
//! gateway's SDK names them.

use std::collections::HashMap;

/// The endpoint's environment variables (its `settings.env`, which is the
/// worker's whole environment together with `PATH`): the place for a
/// handler's secrets and settings.
///
/// [`EnvVars::new`] (and [`Default`]) read them from the worker's
/// environment; `vars` is an ordinary map, so a test can build one by hand.
/// Variables whose name or value is not UTF-8 are left out.
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn handle(_req: Request) -> Result<Response, HandlerError> {
///     let env = EnvVars::new();
///     let region = env.get("REGION").map_or("eu", String::as_str);
///     Ok(Response::ok(json!({ "region": region })))
/// }
///
/// let env = EnvVars { vars: HashMap::from([("REGION".to_string(), "us".to_string())]) };
/// assert_eq!(env.get("REGION").map(String::as_str), Some("us"));
/// assert_eq!(env.get("MISSING"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVars {
    /// The variables by name.
    pub vars: HashMap<String, String>,
}

impl EnvVars {
    /// The endpoint's environment, read now.
    pub fn new() -> Self {
        EnvVars {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .collect(),
        }
    }

    /// The value of the variable `name`, `None` when it is not set.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.vars.get(name)
    }
}

impl Default for EnvVars {
    /// The same as [`EnvVars::new`]: the endpoint's environment (code
    /// written for the original gateway makes its `EnvVars` this way).
    fn default() -> Self {
        EnvVars::new()
    }
}
