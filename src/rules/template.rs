//! Prompt templates: Jinja syntax through `minijinja`, rendered as text.
//!
//! No loader (a template cannot include another or read a file), no auto-escaping (a prompt is
//! text, not HTML), a recursion limit of [`RECURSION_LIMIT`], and [`FUEL`]: minijinja's budget,
//! charged for every instruction and for every byte and item a render produces or visits.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, Value};

use super::body::{Json, Number};
use super::{Facts, RuleError, line_and_column};

/// The longest template accepted, in bytes.
pub(crate) const MAX_SOURCE_LEN: usize = 64 * 1024;

/// minijinja's fuel per render: about that many instructions, or 64 bytes of data each.
pub(crate) const FUEL: u64 = 200_000;

/// How deep blocks, loops and macro calls may nest while rendering.
const RECURSION_LIMIT: usize = 64;

/// The name of the one template each environment holds.
const NAME: &str = "prompt";

/// A compiled template, in an environment of its own.
#[derive(Debug)]
pub(crate) struct Template {
    environment: Environment<'static>,
    uses_body: bool,
    uses_headers: bool,
}

impl Template {
    pub(crate) fn compile(text: &str) -> Result<Template, RuleError> {
        if text.len() > MAX_SOURCE_LEN {
            return Err(RuleError::new(format!(
                "the template is {} bytes long, more than {MAX_SOURCE_LEN}",
                text.len()
            )));
        }
        let text = text.to_owned();
        super::with_deep_stack(move || {
            let mut environment = Environment::new();
            environment.set_debug(false);
            environment.set_auto_escape_callback(|_| AutoEscape::None);
            environment.set_fuel(Some(FUEL));
            environment.set_recursion_limit(RECURSION_LIMIT);
            environment
                .add_template_owned(NAME, text.clone())
                .map_err(|error| locate(&text, &error))?;
            let variables = environment
                .get_template(NAME)
                .map_err(|error| locate(&text, &error))?
                .undeclared_variables(false);
            Ok(Template {
                uses_body: variables.contains("body"),
                uses_headers: variables.contains("headers"),
                environment,
            })
        })
    }

    /// Renders the template; `Err` says why it failed.
    pub(crate) fn render(
        &self,
        body: Option<&Json<'_>>,
        facts: &Facts<'_>,
    ) -> Result<String, String> {
        let text = |text: Option<&str>| text.map_or(Value::from(()), Value::from);
        let headers = if self.uses_headers {
            Value::from(
                facts
                    .headers()
                    .map(|(name, value)| (Arc::<str>::from(name), Value::from(value)))
                    .collect::<BTreeMap<_, _>>(),
            )
        } else {
            Value::from(())
        };
        let body = match body {
            Some(body) if self.uses_body => to_value(body),
            _ => Value::from(()),
        };
        let context = Value::from(BTreeMap::from([
            (Arc::<str>::from("body"), body),
            (Arc::from("action"), text(facts.action)),
            (Arc::from("source"), Value::from(facts.source.as_str())),
            (Arc::from("deliveryId"), text(facts.delivery_id)),
            (Arc::from("headers"), headers),
        ]));
        let template = self
            .environment
            .get_template(NAME)
            .map_err(|error| error.to_string())?;
        template.render(context).map_err(|error| describe(&error))
    }
}

/// A template's error at load, with the line and column the parser gives.
fn locate(text: &str, error: &minijinja::Error) -> RuleError {
    let message = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_owned);
    match (error.range(), error.line()) {
        (Some(range), _) => {
            let (line, column) = line_and_column(text, range.start);
            RuleError::at(message, line, column)
        }
        (None, Some(line)) => RuleError::at(message, line as u32, 1),
        (None, None) => RuleError::new(message),
    }
}

fn describe(error: &minijinja::Error) -> String {
    let what = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    match error.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

/// The template value of a JSON value.
fn to_value(json: &Json<'_>) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(value) => Value::from(*value),
        Json::Number(text) => match Number::parse(text) {
            Number::Int(value) => Value::from(value),
            Number::Uint(value) => Value::from(value),
            Number::Double(value) => Value::from(value),
        },
        Json::String(text) => Value::from(&**text),
        Json::Array(elements) => Value::from(elements.iter().map(to_value).collect::<Vec<_>>()),
        Json::Object(members) => Value::from(
            members
                .iter()
                .map(|(key, value)| (Arc::<str>::from(&**key), to_value(value)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}
