//! Prompt templates: Jinja syntax through `minijinja`, rendered as text.
//!
//! No loader (a template cannot include another or read a file), no auto-escaping (a prompt is
//! text, not HTML), a missing value that is printed or iterated is an error (minijinja's
//! semi-strict undefined), a recursion limit of [`RECURSION_LIMIT`], and [`FUEL`]: minijinja's budget,
//! charged for every instruction and for every byte and item a render produces or visits.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::body::{Json, Number, Paths};
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
    /// The parts of the body it reads.
    paths: Paths,
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
            // A missing field printed or looped over is an error (the delivery is filtered)
            // rather than an empty string in the agent's prompt; `{% if %}` still tests it.
            environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
            environment.set_fuel(Some(FUEL));
            environment.set_recursion_limit(RECURSION_LIMIT);
            environment
                .add_template_owned(NAME, text.clone())
                .map_err(|error| locate(&text, &error))?;
            let variables = environment
                .get_template(NAME)
                .map_err(|error| locate(&text, &error))?
                .undeclared_variables(true);
            // Chains of attributes that start at `body`, as minijinja tracks them; the whole
            // body when the template rebinds the name, after which its chains are not the
            // body's.
            let mut paths = Paths::default();
            let rebinds_body = assigns(&text, "body");
            if rebinds_body {
                paths.insert([]);
            }
            for name in &variables {
                if name == "body" {
                    paths.insert([]);
                } else if let Some(fields) = name.strip_prefix("body.") {
                    paths.insert(fields.split('.'));
                }
            }
            Ok(Template {
                uses_body: !paths.is_empty(),
                uses_headers: variables
                    .iter()
                    .any(|name| name == "headers" || name.starts_with("headers.")),
                paths,
                environment,
            })
        })
    }

    pub(crate) fn paths(&self) -> &Paths {
        &self.paths
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

/// Whether a statement of `text` may bind `name`: a `set` or `for` whose target names it, or a
/// `with`, `macro`, `call`, `import` or `from` that names it anywhere. Errs on the side of yes.
fn assigns(text: &str, name: &str) -> bool {
    text.split("{%").skip(1).any(|block| {
        let statement = block.split("%}").next().unwrap_or(block);
        let statement = statement.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let keyword = statement.split_whitespace().next().unwrap_or("");
        let target = match keyword {
            "set" => statement.split('=').next().unwrap_or(statement),
            "for" => statement.split(" in ").next().unwrap_or(statement),
            "with" | "macro" | "call" | "import" | "from" => statement,
            _ => return false,
        };
        names(target, name)
    })
}

/// Whether `name` appears in `text` as a whole identifier.
fn names(text: &str, name: &str) -> bool {
    let identifier = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(identifier)
            && !text[at + name.len()..]
                .chars()
                .next()
                .is_some_and(identifier)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Paths {
        Template::compile(text).unwrap().paths
    }

    #[test]
    fn the_parts_of_the_body_a_template_reads() {
        let mut expected = Paths::default();
        expected.insert(["issue", "key"]);
        expected.insert(["issue", "fields", "labels"]);
        assert_eq!(
            read(
                "{{ body.issue.key }}{% for l in body.issue.fields.labels %}{{ l.x }}{% endfor %}"
            ),
            expected
        );
        assert_eq!(read("{{ body | tojson }}"), Paths::whole());
        assert_eq!(read("{{ body['issue'].key }}"), Paths::whole());
        assert_eq!(read("{{ action }}"), Paths::default());
        // A template that rebinds `body` reads all of it.
        assert_eq!(
            read("{% set body = body.issue %}{{ body.key }}"),
            Paths::whole()
        );
        assert_eq!(
            read("{% for body in [1] %}{% endfor %}{{ body.issue.key }}"),
            Paths::whole()
        );
        assert!(!assigns(
            "{% for x in body.items %}{% set y = body.a %}",
            "body"
        ));
        assert!(assigns("{%- set body = 1 -%}", "body"));
        assert!(!assigns("{% set somebody = 1 %}", "body"));
    }
}
