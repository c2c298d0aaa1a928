//! What a delivery starts: a trigger's [`Filter`], the agent's input ([`InputExpression`]) and
//! its prompt ([`PromptTemplate`]).
//!
//! Filters and inputs are written in CEL, the Common Expression Language that Kubernetes,
//! Envoy and Tekton use for such rules; prompts are templates in Jinja syntax. Each sees the
//! same variables:
//!
//! | variable | value |
//! |---|---|
//! | `body` | the JSON body (a Slack form as its JSON object; an empty body is `null`) |
//! | `action` | the delivery's action (`jira:issue_created`, `app_mention` …), or `null` |
//! | `source` | the source's name (`jira`, `slack` …) |
//! | `deliveryId` | the sender's delivery id, or `null` |
//! | `headers` | the request's headers, by lower-case name; repeated headers joined with `", "`; never `authorization`, cookies or any source's signature header |
//!
//! ```
//! use agent_trigger::rules::{Filter, InputExpression, PromptTemplate};
//! use agent_trigger::{Source, Trigger};
//! use uuid::Uuid;
//!
//! let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira)
//!     .with_filter(Filter::parse(
//!         r#"action == "jira:issue_created" && body.issue.fields.priority.name in ["High", "Highest"]"#,
//!     )?)
//!     .with_input(InputExpression::parse(
//!         r#"{"key": body.issue.key, "summary": body.issue.fields.summary}"#,
//!     )?)
//!     .with_prompt(PromptTemplate::parse(
//!         "Triage {{ body.issue.key }}: {{ body.issue.fields.summary }}",
//!     )?);
//! assert!(trigger.filter().is_some());
//! # Ok::<(), agent_trigger::rules::RuleError>(())
//! ```
//!
//! # In the pipeline
//!
//! The rules run after authentication, body validation and the action allowlist, before the
//! duplicate check and the sink. A delivery the filter does not match (false, or an error such
//! as a missing field or a wrong type), or whose input or prompt fails, is answered
//! `200 {"executionId":"skipped","message":"filtered out: <why>","action":…}` and starts
//! nothing; metrics and the log call that outcome `filtered`. A trigger with any rule refuses a
//! body in which any object holds the same key twice (`400`, `invalid_json`): the filter and
//! the agent must never read different values. A trigger without rules pays nothing: its body
//! is never turned into values.
//!
//! The [`Delivery`](crate::Delivery) carries the input's JSON as its `input` (without an
//! input expression, the body's bytes untouched) and the rendered prompt as its `prompt`.
//! Numbers pass through CEL's `int`, `uint` and `double`: a number beyond them loses precision,
//! and one too large for a finite double is ±infinity inside CEL, which an input may not hold.
//!
//! # Bounded cost
//!
//! The rules are written by the operator, the bodies by anyone who can reach the endpoint: on
//! any body within the limit, an evaluation stays within a fixed budget.
//!
//! - An expression is at most 4 KiB, nests at most 48 levels, names only the variables above,
//!   and has no comprehension (`all`, `exists`, `exists_one`, `map`, `filter`) inside
//!   another's predicate. These are checked by [`Filter::parse`] and
//!   [`InputExpression::parse`].
//! - While it runs, a comprehension over more than 10 000 elements, or whose predicate reads
//!   `body` other than through its own variable, is an evaluation error; so is an evaluation
//!   that would spend more than its budget (250 000 steps, 10 to 25 ms: every operation whose work
//!   grows with its operands — concatenation, equality, `in`, comparisons, copies into lists
//!   and maps, function arguments, each element a comprehension visits — is charged before it
//!   runs).
//! - A template has no loader, no HTML escaping, a recursion limit and minijinja's fuel (every
//!   instruction, byte and item charged).
//! - The input's JSON and the rendered prompt are at most the service's body limit; the prompt
//!   then has its control characters other than newline and tab replaced by U+FFFD, and is cut
//!   on a character boundary so that it and a closing `[…cut]` fit in [`MAX_PROMPT_LEN`] bytes.
//!
//! CEL has no `matches` here (the regular expression would be compiled on every call); use
//! `startsWith`, `endsWith` and `contains`.

mod body;
mod expression;
mod template;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use bytes::Bytes;
use http::HeaderMap;

use crate::Source;

pub(crate) use body::{Json, Paths};

/// The longest prompt a delivery carries, in bytes, its `[…cut]` marker included.
pub const MAX_PROMPT_LEN: usize = 64 * 1024;

/// The longest concurrency key, in bytes: a key is an index entry, not a document.
pub const MAX_KEY_LEN: usize = 1024;

/// What ends a prompt that was cut to [`MAX_PROMPT_LEN`].
const CUT_MARKER: &str = "[…cut]";

/// A condition on deliveries, in CEL: a delivery for which it is not `true` starts nothing.
///
/// ```
/// use agent_trigger::rules::Filter;
///
/// let filter = Filter::parse(r#"action.startsWith("jira:issue_") && has(body.issue.key)"#)?;
/// assert_eq!(filter.as_str(), r#"action.startsWith("jira:issue_") && has(body.issue.key)"#);
///
/// let error = Filter::parse("body.issue.key ==").unwrap_err();
/// assert_eq!((error.line(), error.column()), (Some(1), Some(19)));
/// # Ok::<(), agent_trigger::rules::RuleError>(())
/// ```
#[derive(Clone)]
pub struct Filter(Arc<Compiled<expression::Expression>>);

/// What the execution receives instead of the whole body: a CEL expression giving any JSON
/// value.
///
/// ```
/// use agent_trigger::rules::InputExpression;
///
/// let input = InputExpression::parse(r#"{"key": body.issue.key, "labels": body.issue.fields.labels}"#)?;
/// assert!(input.as_str().starts_with("{\"key\""));
/// assert!(InputExpression::parse("bodee.issue").is_err());
/// # Ok::<(), agent_trigger::rules::RuleError>(())
/// ```
#[derive(Clone)]
pub struct InputExpression(Arc<Compiled<expression::Expression>>);

/// The agent's prompt: a template in Jinja syntax (`minijinja`), rendered as text.
///
/// ```
/// use agent_trigger::rules::PromptTemplate;
///
/// let prompt = PromptTemplate::parse("Triage {{ body.issue.key }}{% if action %} ({{ action }}){% endif %}")?;
/// assert!(prompt.as_str().starts_with("Triage"));
///
/// let error = PromptTemplate::parse("Hello\n{{ body.name ").unwrap_err();
/// assert_eq!(error.line(), Some(2));
/// # Ok::<(), agent_trigger::rules::RuleError>(())
/// ```
#[derive(Clone)]
pub struct PromptTemplate(Arc<Compiled<template::Template>>);

/// What a delivery is about, for [`Concurrency`](crate::concurrency::Concurrency): a CEL
/// expression giving a string. Deliveries with the same key are one subject.
///
/// ```
/// use agent_trigger::rules::ConcurrencyKey;
///
/// let key = ConcurrencyKey::parse(r#"body.repository.full_name + "/" + string(body.number)"#)?;
/// assert!(key.as_str().starts_with("body.repository"));
/// assert!(ConcurrencyKey::parse("body.issue.").is_err());
/// # Ok::<(), agent_trigger::rules::RuleError>(())
/// ```
#[derive(Clone)]
pub struct ConcurrencyKey(Arc<Compiled<expression::Expression>>);

/// A rule with the text it was compiled from.
struct Compiled<T> {
    text: Box<str>,
    rule: T,
}

/// Rules compiled before and still in use, by text: a store that reloads its triggers, or many
/// triggers with the same rule, compile it once.
struct Cache<T>(Mutex<HashMap<Box<str>, Weak<Compiled<T>>>>);

impl<T> Cache<T> {
    fn new() -> Self {
        Cache(Mutex::new(HashMap::new()))
    }

    fn get_or_compile(
        &self,
        text: &str,
        compile: impl FnOnce(&str) -> Result<T, RuleError>,
    ) -> Result<Arc<Compiled<T>>, RuleError> {
        if let Some(compiled) = self.lock().get(text).and_then(Weak::upgrade) {
            return Ok(compiled);
        }
        let compiled = Arc::new(Compiled {
            text: text.into(),
            rule: compile(text)?,
        });
        let mut cache = self.lock();
        if cache.len() >= 64 && cache.len().is_power_of_two() {
            cache.retain(|_, compiled| compiled.strong_count() > 0);
        }
        cache.insert(text.into(), Arc::downgrade(&compiled));
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Weak<Compiled<T>>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

static EXPRESSIONS: LazyLock<Cache<expression::Expression>> = LazyLock::new(Cache::new);
static TEMPLATES: LazyLock<Cache<template::Template>> = LazyLock::new(Cache::new);

macro_rules! rule_common {
    ($name:ident, $cache:ident, $compile:path) => {
        impl $name {
            /// Compiles `text`; the error says what is wrong and, where the parser tells, where.
            pub fn parse(text: &str) -> Result<Self, RuleError> {
                $cache.get_or_compile(text, $compile).map($name)
            }

            /// The text it was compiled from.
            pub fn as_str(&self) -> &str {
                &self.0.text
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name))
                    .field(&self.as_str())
                    .finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = RuleError;

            fn from_str(text: &str) -> Result<Self, RuleError> {
                $name::parse(text)
            }
        }
    };
}

rule_common!(Filter, EXPRESSIONS, expression::Expression::compile);
rule_common!(
    InputExpression,
    EXPRESSIONS,
    expression::Expression::compile
);
rule_common!(PromptTemplate, TEMPLATES, template::Template::compile);
rule_common!(ConcurrencyKey, EXPRESSIONS, expression::Expression::compile);

/// `trigger` with the rules a store kept as their texts.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn with_stored_rules(
    mut trigger: crate::Trigger,
    (filter, input, prompt): (Option<String>, Option<String>, Option<String>),
) -> Result<crate::Trigger, RuleError> {
    if let Some(text) = filter {
        trigger = trigger.with_filter(Filter::parse(&text)?);
    }
    if let Some(text) = input {
        trigger = trigger.with_input(InputExpression::parse(&text)?);
    }
    if let Some(text) = prompt {
        trigger = trigger.with_prompt(PromptTemplate::parse(&text)?);
    }
    Ok(trigger)
}

/// Why a filter, input or prompt does not compile: a sentence, and the line and column inside
/// the rule's text (both counted from 1, columns in characters) where the parser gives them.
///
/// ```
/// use agent_trigger::rules::Filter;
///
/// let error = Filter::parse("body.a == 1 &&\n  bodyy.b == 2").unwrap_err();
/// assert_eq!((error.line(), error.column()), (Some(2), Some(3)));
/// assert!(error.message().contains("bodyy"));
/// assert!(error.to_string().starts_with("line 2, column 3: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    message: String,
    position: Option<(u32, u32)>,
}

impl RuleError {
    fn new(message: String) -> Self {
        RuleError {
            message,
            position: None,
        }
    }

    fn at(message: String, line: u32, column: u32) -> Self {
        RuleError {
            message,
            position: Some((line, column)),
        }
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The line inside the rule's text, from 1.
    pub fn line(&self) -> Option<u32> {
        self.position.map(|(line, _)| line)
    }

    /// The column inside that line, from 1, in characters.
    pub fn column(&self) -> Option<u32> {
        self.position.map(|(_, column)| column)
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RuleError {}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn line_and_column(text: &str, at: usize) -> (u32, u32) {
    let before = &text[..floor_char_boundary(text, at.min(text.len()))];
    let line = 1 + before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = 1 + before[line_start..].chars().count();
    (line as u32, column as u32)
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Runs `compile` on a thread with a stack deep enough for the parsers' own nesting limits:
/// rules are compiled when a configuration loads, never per request.
fn with_deep_stack<T: Send + 'static>(
    compile: impl FnOnce() -> Result<T, RuleError> + Send + 'static,
) -> Result<T, RuleError> {
    const STACK: usize = 256 << 20;
    std::thread::Builder::new()
        .name("agent-trigger-rules".into())
        .stack_size(STACK)
        .spawn(compile)
        .map_err(|error| RuleError::new(format!("could not start the compiler's thread: {error}")))?
        .join()
        .unwrap_or_else(|_| Err(RuleError::new("the rule could not be compiled".to_owned())))
}

/// Header names the rules never see: credentials, cookies and every source's signature.
const HIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    // the sources' signatures
    "x-hub-signature",
    "x-slack-signature",
    "linear-signature",
    "x-h1-signature",
    "x-bugcrowd-digest",
    "webhook-signature",
    // the signed senders' presets
    "x-hub-signature-256",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-twilio-signature",
    "svix-signature",
    "x-zendesk-webhook-signature",
    "x-pagerduty-signature",
    "x-gitlab-token",
    "sentry-hook-signature",
    "x-signature-ed25519",
];

/// Whether a header carries a credential or a signature: the rules never see it and the
/// deliveries log keeps it redacted.
pub(crate) fn is_hidden_header(name: &str) -> bool {
    HIDDEN_HEADERS.contains(&name)
}

/// What the rules know of a delivery besides its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub(crate) source: Source,
    pub(crate) action: Option<&'a str>,
    pub(crate) delivery_id: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    /// The trigger's own signature header when its scheme names one (a custom table's).
    pub(crate) signature_header: Option<&'a str>,
}

impl<'a> Facts<'a> {
    /// The headers the rules see, by name, repeated ones joined with `", "`.
    fn headers(&self) -> impl Iterator<Item = (&'a str, String)> + 'a {
        let (headers, own_signature) = (self.headers, self.signature_header);
        headers
            .keys()
            .filter(|name| !is_hidden_header(name.as_str()))
            .filter(move |name| own_signature != Some(name.as_str()))
            .map(move |name| {
                let mut joined = String::new();
                for (index, value) in headers.get_all(name).iter().enumerate() {
                    if index > 0 {
                        joined.push_str(", ");
                    }
                    joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
                }
                (name.as_str(), joined)
            })
    }
}

/// A trigger's rules, borrowed from it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rules<'t> {
    pub(crate) filter: Option<&'t Filter>,
    pub(crate) input: Option<&'t InputExpression>,
    pub(crate) prompt: Option<&'t PromptTemplate>,
    pub(crate) key: Option<&'t ConcurrencyKey>,
}

/// The parts of the body that any of these rules reads.
pub(crate) fn body_paths<'t>(
    filter: Option<&'t Filter>,
    input: Option<&'t InputExpression>,
    prompt: Option<&'t PromptTemplate>,
    key: Option<&'t ConcurrencyKey>,
) -> Paths {
    let mut paths = Paths::default();
    for expression in [
        filter.map(|f| &f.0.rule),
        input.map(|i| &i.0.rule),
        key.map(|k| &k.0.rule),
    ]
    .into_iter()
    .flatten()
    {
        paths.merge(expression.paths());
    }
    if let Some(prompt) = prompt {
        paths.merge(prompt.0.rule.paths());
    }
    paths
}

/// What the rules made of a delivery that passed them.
#[derive(Debug, Default)]
pub(crate) struct Shaped {
    /// The input expression's JSON, when the trigger has one.
    pub(crate) input: Option<Bytes>,
    pub(crate) prompt: Option<String>,
    /// The concurrency key's string, when the trigger has one.
    pub(crate) key: Option<String>,
}

impl Rules<'_> {
    /// Runs the filter, the input and the prompt over the delivery; `Err` is why it is filtered
    /// out. `limit` bounds the input's JSON and the rendered prompt.
    pub(crate) fn apply(
        &self,
        body: &Json<'_>,
        facts: &Facts<'_>,
        limit: usize,
    ) -> Result<Shaped, String> {
        let mut shaped = Shaped::default();
        let uses = [
            self.filter.map(|f| &f.0.rule),
            self.input.map(|i| &i.0.rule),
            self.key.map(|k| &k.0.rule),
        ]
        .into_iter()
        .flatten()
        .fold(expression::Uses::default(), |uses, rule| {
            let more = rule.uses();
            expression::Uses {
                body: uses.body || more.body,
                headers: uses.headers || more.headers,
            }
        });
        if self.filter.is_some() || self.input.is_some() || self.key.is_some() {
            let variables = expression::Variables::new(Some(body), facts, uses);
            if let Some(filter) = self.filter {
                let matched = filter
                    .0
                    .rule
                    .evaluate(&variables, |value| {
                        value
                            .downcast_ref::<cel::common::types::CelBool>()
                            .map(|value| *value.inner())
                            .ok_or_else(|| {
                                format!("the filter gave a {}, not a bool", value.get_type().name())
                            })
                    })
                    .map_err(|why| format!("filter: {why}"))?;
                if !matched {
                    return Err("the filter is false".to_owned());
                }
            }
            if let Some(input) = self.input {
                let json = input
                    .0
                    .rule
                    .evaluate(&variables, |value| {
                        let mut out = Vec::new();
                        expression::write_json(value, &mut out, limit)?;
                        Ok(out)
                    })
                    .map_err(|why| format!("input: {why}"))?;
                shaped.input = Some(Bytes::from(json));
            }
            if let Some(key) = self.key {
                let text = key
                    .0
                    .rule
                    .evaluate(&variables, |value| {
                        value
                            .downcast_ref::<cel::common::types::CelString<'_>>()
                            .map(|text| text.inner().to_owned())
                            .ok_or_else(|| {
                                format!("it gave a {}, not a string", value.get_type().name())
                            })
                    })
                    .map_err(|why| format!("concurrency key: {why}"))?;
                if text.len() > MAX_KEY_LEN {
                    return Err(format!(
                        "concurrency key: {} bytes, more than {MAX_KEY_LEN}",
                        text.len()
                    ));
                }
                shaped.key = Some(text);
            }
        }
        if let Some(prompt) = self.prompt {
            let text = prompt
                .0
                .rule
                .render(Some(body), facts)
                .map_err(|why| format!("prompt: {why}"))?;
            if text.len() > limit {
                return Err(format!(
                    "prompt: {} bytes rendered, more than the limit of {limit}",
                    text.len()
                ));
            }
            shaped.prompt = Some(fit_prompt(text));
        }
        Ok(shaped)
    }
}

/// The parts of a body the JSON step validated (its keys unique) that `paths` names.
pub(crate) fn parse_body<'b>(body: &'b [u8], paths: &Paths) -> Json<'b> {
    if paths.is_empty() {
        return Json::Null;
    }
    body::parse(body, paths)
}

/// A prompt as a command's environment can carry it: control characters other than newline and
/// tab replaced by U+FFFD, then cut on a character boundary so that it and [`CUT_MARKER`] fit
/// in [`MAX_PROMPT_LEN`] bytes.
fn fit_prompt(text: String) -> String {
    let mut text = if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect()
    } else {
        text
    };
    if text.len() > MAX_PROMPT_LEN {
        let end = floor_char_boundary(&text, MAX_PROMPT_LEN - CUT_MARKER.len());
        text.truncate(end);
        text.push_str(CUT_MARKER);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_lose_control_characters_and_are_cut_on_a_character() {
        assert_eq!(
            fit_prompt("a\tb\nc\u{7}d\u{0}".into()),
            "a\tb\nc\u{fffd}d\u{fffd}"
        );
        // Three bytes a character: the cut falls two bytes short of the limit.
        let cut = fit_prompt("€".repeat(MAX_PROMPT_LEN));
        assert!(cut.ends_with(CUT_MARKER));
        assert_eq!(cut.len(), MAX_PROMPT_LEN - 2);
        let exact = "x".repeat(MAX_PROMPT_LEN);
        assert_eq!(fit_prompt(exact.clone()), exact);
    }

    #[test]
    fn credentials_and_every_signature_header_are_hidden_from_the_rules() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer atk_x"),
            ("cookie", "a=b"),
            ("x-hub-signature-256", "sha256=00"),
            ("x-acme-signature", "sig"),
            ("x-acme-event", "push"),
        ] {
            headers.insert(http::HeaderName::from_static(name), value.parse().unwrap());
        }
        let seen: Vec<_> = facts(&headers).headers().collect();
        assert_eq!(seen, [("x-acme-event", "push".to_owned())]);
    }

    fn facts(headers: &HeaderMap) -> Facts<'_> {
        Facts {
            source: Source::Jira,
            action: Some("jira:issue_created"),
            delivery_id: None,
            headers,
            signature_header: Some("x-acme-signature"),
        }
    }

    /// The filter's verdict on `body`.
    fn filter(expression: &str, body: &str) -> Result<(), String> {
        let filter = Filter::parse(expression).unwrap();
        let rules = Rules {
            filter: Some(&filter),
            ..Rules::default()
        };
        let tree = parse_body(
            body.as_bytes(),
            &body_paths(Some(&filter), None, None, None),
        );
        rules
            .apply(&tree, &facts(&HeaderMap::new()), 1 << 20)
            .map(|_| ())
    }

    fn input(expression: &str, body: &str) -> Result<String, String> {
        let input = InputExpression::parse(expression).unwrap();
        let rules = Rules {
            input: Some(&input),
            ..Rules::default()
        };
        let tree = parse_body(body.as_bytes(), &body_paths(None, Some(&input), None, None));
        let shaped = rules.apply(&tree, &facts(&HeaderMap::new()), 1 << 20)?;
        Ok(String::from_utf8(shaped.input.unwrap().to_vec()).unwrap())
    }

    #[test]
    fn filters_match_miss_and_fail() {
        let body = r#"{"issue":{"key":"A-1","fields":{"priority":{"name":"High"},"labels":["x","y"],"n":3}}}"#;
        assert_eq!(
            filter(r#"body.issue.fields.priority.name in ["High"]"#, body),
            Ok(())
        );
        assert_eq!(
            filter(r#"body.issue.fields.priority.name == "Low""#, body),
            Err("the filter is false".into())
        );
        assert_eq!(
            filter("body.issue.fields.missing == 1", body),
            Err("filter: no such key: missing".into())
        );
        assert!(
            filter("body.issue.fields.n > 'a'", body)
                .unwrap_err()
                .starts_with("filter: ")
        );
        assert_eq!(
            filter("has(body.issue.key) && !has(body.nope)", body),
            Ok(())
        );
        assert_eq!(
            filter("body.issue.fields.labels.exists(l, l == 'y')", body),
            Ok(())
        );
        assert_eq!(filter("body.issue.fields.n + 1 == 4", body), Ok(()));
        // Comparisons across numeric types, of strings, and of what does not compare.
        assert_eq!(
            filter(
                "body.issue.fields.n >= 3 && body.issue.fields.n < 3.5 && body.issue.fields.n > 2u \
                 && body.issue.fields.n <= 3 && 'A' < body.issue.key",
                body
            ),
            Ok(())
        );
        assert_eq!(
            filter("body.issue.fields.n > 3", body),
            Err("the filter is false".into())
        );
        let error = filter("body.issue.key > 1", body).unwrap_err();
        assert!(error.contains("_>_") && error.contains("string"), "{error}");
        assert_eq!(
            filter("action.startsWith('jira:') && source == 'jira'", body),
            Ok(())
        );
        assert_eq!(filter("deliveryId == null", body), Ok(()));
        assert_eq!(
            filter("body.issue.key", body),
            Err("filter: the filter gave a string, not a bool".into())
        );
    }

    #[test]
    fn inputs_are_json() {
        let body = r#"{"issue":{"key":"A-1","n":1e400,"big":18446744073709551615,"f":1.5}}"#;
        assert_eq!(
            input(
                r#"{"key": body.issue.key, "list": [1, 2u, 2.5, true, null]}"#,
                body
            )
            .unwrap(),
            r#"{"key":"A-1","list":[1,2,2.5,true,null]}"#
        );
        assert_eq!(
            input("body.issue.big", body).unwrap(),
            "18446744073709551615"
        );
        assert!(input("body.issue.n", body).unwrap_err().contains("inf"));
        assert!(
            input("{1: 2}", body)
                .unwrap_err()
                .contains("keys are not strings")
        );
        assert_eq!(input("body.issue.f", body).unwrap(), "1.5");
    }

    #[test]
    fn comprehensions_are_bounded() {
        let many = format!("{{\"items\":[{}]}}", vec!["1"; 10_001].join(","));
        assert_eq!(
            filter("body.items.all(x, x == 1)", &many),
            Err("filter: a comprehension over 10001 elements: at most 10000".into())
        );
        let few = r#"{"items":[1,2,3],"limit":2}"#;
        assert_eq!(filter("body.items.exists(x, x > 2)", few), Ok(()));
        assert!(
            filter("body.items.exists(x, x > body.limit)", few)
                .unwrap_err()
                .contains("predicate reads `body`")
        );
        assert_eq!(
            filter("body.items.map(x, x * 2).all(y, y > 1)", few),
            Ok(())
        );
        let nested = Filter::parse("body.items.all(x, body.items.exists(y, y == x))").unwrap_err();
        assert!(nested.message().contains("may not be nested"), "{nested}");
    }

    #[test]
    fn errors_at_load_say_where() {
        let error = Filter::parse("body.a ==").unwrap_err();
        assert_eq!(error.line(), Some(1));
        let error = Filter::parse("body.a == 1 &&\n  bodyy.b == 2").unwrap_err();
        assert_eq!(
            (error.line(), error.column()),
            (Some(2), Some(3)),
            "{error}"
        );
        assert!(Filter::parse(&"(".repeat(3000)).is_err());
        assert!(Filter::parse(&format!("{}1{}", "(".repeat(100), ")".repeat(100))).is_err());
        assert!(Filter::parse(&format!("1{}", " + 1".repeat(100))).is_err());
        assert!(
            Filter::parse(&"x".repeat(5000))
                .unwrap_err()
                .message()
                .contains("4096")
        );
        let error = PromptTemplate::parse("a\n{% if %}").unwrap_err();
        assert_eq!(error.line(), Some(2), "{error}");
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(line_and_column("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_and_column("", 0), (1, 1));
    }
}
