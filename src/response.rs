//! Every answer the service gives, and the one function that turns it into an HTTP response.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::ExecutionId;
use crate::json::JsonError;
use crate::signature::SignatureError;
use crate::source::header::IDEMPOTENT_REPLAYED;
use crate::validation::{Issue, ValidationError};

/// The body type of every response the service makes.
pub type ResponseBody = Full<Bytes>;

/// What the service answers, one variant per row of the contract's pipeline table.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The path is not the route (only [`crate::TriggerService`] answers this; the layer hands
    /// the request on).
    NotFound,
    MethodNotAllowed,
    InvalidParams(Vec<Issue>),
    MissingCredentials,
    InvalidToken,
    TriggerNotFound,
    PayloadTooLarge(usize),
    UnsupportedMediaType {
        accepts_form: bool,
    },
    Signature(SignatureError),
    UnreadableBody,
    InvalidJson(JsonError),
    Challenge(Box<str>),
    /// Discord's answer to its PING: `{"type":1}`.
    Pong,
    /// A started, replayed or skipped delivery answered in Discord's shape: a deferred
    /// response (`"type":5`) carrying the answer's fields. The agent follows up with the
    /// interaction's token.
    Deferred(Box<Answer>),
    Skipped {
        message: Cow<'static, str>,
        action: Option<String>,
    },
    /// The trigger's rules filtered the delivery out: answered as a skip, counted apart.
    Filtered {
        message: String,
        action: Option<String>,
    },
    Started(ExecutionId),
    Replayed(ExecutionId),
    /// The delivery joined an execution still waiting out its debounce.
    Joined(ExecutionId),
    Rejected(String),
    Unavailable(Duration),
    /// Past the trigger's rate: `429` with `Retry-After`.
    TooManyRequests(Duration),
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SkippedBody<'a> {
    execution_id: &'static str,
    message: &'a str,
    action: &'a str,
}

#[derive(Serialize)]
struct ChallengeBody<'a> {
    challenge: &'a str,
}

/// Discord's interaction response type for "deferred channel message with source".
const DEFERRED_CHANNEL_MESSAGE: u8 = 5;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeferredBody<'a> {
    r#type: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
}

impl Answer {
    /// The answer in Discord's shape, for the answers that have one (started, replayed,
    /// skipped); others stay as they are.
    pub(crate) fn deferred(self) -> Answer {
        match self {
            Answer::Started(_)
            | Answer::Replayed(_)
            | Answer::Joined(_)
            | Answer::Skipped { .. } => Answer::Deferred(Box::new(self)),
            other => other,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Answer::Deferred(answer) => answer.status(),
            Answer::NotFound | Answer::TriggerNotFound => StatusCode::NOT_FOUND,
            Answer::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Answer::InvalidParams(_) | Answer::UnreadableBody | Answer::InvalidJson(_) => {
                StatusCode::BAD_REQUEST
            }
            Answer::MissingCredentials | Answer::InvalidToken | Answer::Signature(_) => {
                StatusCode::UNAUTHORIZED
            }
            Answer::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Answer::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Answer::Challenge(_)
            | Answer::Pong
            | Answer::Skipped { .. }
            | Answer::Filtered { .. }
            | Answer::Started(_)
            | Answer::Replayed(_)
            | Answer::Joined(_)
            | Answer::Rejected(_) => StatusCode::OK,
            Answer::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Answer::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Answer::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status code as a label, without formatting it per request.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn status_label(&self) -> &'static str {
        match self.status() {
            StatusCode::OK => "200",
            StatusCode::BAD_REQUEST => "400",
            StatusCode::UNAUTHORIZED => "401",
            StatusCode::NOT_FOUND => "404",
            StatusCode::METHOD_NOT_ALLOWED => "405",
            StatusCode::PAYLOAD_TOO_LARGE => "413",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "415",
            StatusCode::TOO_MANY_REQUESTS => "429",
            StatusCode::SERVICE_UNAVAILABLE => "503",
            _ => "500",
        }
    }

    /// The execution the delivery started or replayed, if any.
    pub(crate) fn execution_id(&self) -> Option<&ExecutionId> {
        match self {
            Answer::Started(id) | Answer::Replayed(id) | Answer::Joined(id) => Some(id),
            Answer::Deferred(answer) => answer.execution_id(),
            _ => None,
        }
    }

    /// A short name of the outcome for logs and metrics.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Answer::NotFound => "not_found",
            Answer::MethodNotAllowed => "method_not_allowed",
            Answer::InvalidParams(_) => "invalid_params",
            Answer::MissingCredentials => "missing_credentials",
            Answer::InvalidToken => "invalid_token",
            Answer::TriggerNotFound => "trigger_not_found",
            Answer::PayloadTooLarge(_) => "payload_too_large",
            Answer::UnsupportedMediaType { .. } => "unsupported_media_type",
            Answer::Signature(_) => "invalid_signature",
            Answer::UnreadableBody => "unreadable_body",
            Answer::InvalidJson(_) => "invalid_json",
            Answer::Challenge(_) | Answer::Pong => "challenge",
            Answer::Deferred(answer) => answer.outcome(),
            Answer::Skipped { .. } => "skipped",
            Answer::Filtered { .. } => "filtered",
            Answer::Started(_) => "started",
            Answer::Replayed(_) => "replayed",
            Answer::Joined(_) => "joined",
            Answer::Rejected(_) => "rejected",
            Answer::Unavailable(_) => "unavailable",
            Answer::TooManyRequests(_) => "rate_limited",
            Answer::Internal => "internal_error",
        }
    }

    /// Why, in a sentence, for the deliveries log.
    pub(crate) fn reason(&self) -> String {
        match self {
            Answer::NotFound => "not found".to_owned(),
            Answer::MethodNotAllowed => "method not allowed".to_owned(),
            Answer::InvalidParams(issues) => match issues.first() {
                Some(issue) => format!("invalid request: {}", issue.message),
                None => "invalid request".to_owned(),
            },
            Answer::MissingCredentials => "missing credentials".to_owned(),
            Answer::InvalidToken => "invalid API key".to_owned(),
            Answer::TriggerNotFound => "trigger not found".to_owned(),
            Answer::PayloadTooLarge(limit) => {
                format!("request body is larger than the limit of {limit} bytes")
            }
            Answer::UnsupportedMediaType { .. } => "unsupported content type".to_owned(),
            Answer::Signature(reason) => format!("invalid signature: {reason}"),
            Answer::UnreadableBody => "the request body could not be read".to_owned(),
            Answer::InvalidJson(problem) => format!(
                "invalid JSON at line {} column {}: {}",
                problem.line, problem.column, problem.message
            ),
            Answer::Challenge(_) => "URL verification challenge answered".to_owned(),
            Answer::Pong => "ping answered".to_owned(),
            Answer::Deferred(answer) => answer.reason(),
            Answer::Skipped { message, .. } => message.clone().into_owned(),
            Answer::Filtered { message, .. } => message.clone(),
            Answer::Started(_) => "execution started".to_owned(),
            Answer::Replayed(_) => {
                "a delivery id already accepted: the original execution".to_owned()
            }
            Answer::Joined(_) => {
                "joined its subject's execution, still waiting out its debounce".to_owned()
            }
            Answer::Rejected(message) => format!("refused by the sink: {message}"),
            Answer::Unavailable(_) => "temporarily unavailable".to_owned(),
            Answer::TooManyRequests(_) => "too many deliveries for this trigger".to_owned(),
            Answer::Internal => "internal error".to_owned(),
        }
    }

    /// The response, its headers written into `headers` after emptying it: the request's own
    /// map. hyper parses a connection's next request into the map of the response it last wrote,
    /// so a map the size of the last request serves the next one without allocating, and this
    /// response allocates none of its own.
    pub(crate) fn into_response(self, mut headers: HeaderMap) -> Response<ResponseBody> {
        let status = self.status();
        let body = match &self {
            Answer::NotFound => Bytes::from_static(br#"{"error":"not found"}"#),
            Answer::MethodNotAllowed => Bytes::from_static(br#"{"error":"method not allowed"}"#),
            Answer::InvalidParams(issues) => json(&ValidationError::new(issues)),
            Answer::MissingCredentials => Bytes::from_static(
                br#"{"error":"missing credentials: send Authorization: Bearer <api key> or the source's signature"}"#,
            ),
            Answer::InvalidToken => Bytes::from_static(br#"{"error":"invalid API key"}"#),
            Answer::TriggerNotFound => Bytes::from_static(br#"{"error":"trigger not found"}"#),
            Answer::PayloadTooLarge(limit) => error(&format!(
                "request body is larger than the limit of {limit} bytes"
            )),
            Answer::UnsupportedMediaType { accepts_form: false } => Bytes::from_static(
                br#"{"error":"unsupported content type: send application/json"}"#,
            ),
            Answer::UnsupportedMediaType { accepts_form: true } => Bytes::from_static(
                br#"{"error":"unsupported content type: send application/json or application/x-www-form-urlencoded"}"#,
            ),
            Answer::Signature(reason) => error(&format!("invalid signature: {reason}")),
            Answer::UnreadableBody => {
                Bytes::from_static(br#"{"error":"the request body could not be read"}"#)
            }
            Answer::InvalidJson(problem) => json(&ValidationError::new(&[Issue::invalid_json(
                format!("Invalid JSON: {}", problem.message),
                problem.line,
                problem.column,
            )])),
            Answer::Challenge(challenge) => json(&ChallengeBody { challenge }),
            Answer::Pong => Bytes::from_static(br#"{"type":1}"#),
            Answer::Deferred(answer) => json(&match &**answer {
                Answer::Skipped { message, action } => DeferredBody {
                    r#type: DEFERRED_CHANNEL_MESSAGE,
                    execution_id: Some(Cow::Borrowed("skipped")),
                    message: Some(message),
                    action: Some(action.as_deref().unwrap_or("")),
                },
                answer => DeferredBody {
                    r#type: DEFERRED_CHANNEL_MESSAGE,
                    execution_id: answer.execution_id().map(|id| Cow::Owned(id.to_string())),
                    message: None,
                    action: None,
                },
            }),
            Answer::Skipped { message, action } => json(&SkippedBody {
                execution_id: "skipped",
                message,
                action: action.as_deref().unwrap_or(""),
            }),
            Answer::Filtered { message, action } => json(&SkippedBody {
                execution_id: "skipped",
                message,
                action: action.as_deref().unwrap_or(""),
            }),
            Answer::Started(id) | Answer::Replayed(id) | Answer::Joined(id) => id.json_body(),
            Answer::Rejected(message) => error(message),
            Answer::Unavailable(_) => Bytes::from_static(
                br#"{"error":"temporarily unavailable, retry later"}"#,
            ),
            Answer::TooManyRequests(_) => Bytes::from_static(
                br#"{"error":"too many deliveries for this trigger, retry later"}"#,
            ),
            Answer::Internal => Bytes::from_static(br#"{"error":"internal error"}"#),
        };
        headers.clear();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let answer = match &self {
            Answer::Deferred(answer) => answer,
            answer => answer,
        };
        match *answer {
            Answer::MethodNotAllowed => {
                headers.insert(ALLOW, HeaderValue::from_static("POST"));
            }
            Answer::MissingCredentials | Answer::Signature(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Answer::InvalidToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Answer::Replayed(_) => {
                headers.insert(
                    HeaderName::from_static(IDEMPOTENT_REPLAYED),
                    HeaderValue::from_static("true"),
                );
            }
            Answer::Unavailable(retry_after) => {
                // At least one second: `Retry-After: 0` invites an immediate retry storm.
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            Answer::TooManyRequests(wait) => {
                // Rounded up: a sender that waits this long finds room.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            _ => {}
        }
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

fn json(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("response bodies serialise"))
}

fn error(message: &str) -> Bytes {
    json(&ErrorBody { error: message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_delivery_is_counted_apart_and_carries_no_replay_header() {
        let id = ExecutionId::new_v7();
        let joined = Answer::Joined(id.clone());
        assert_eq!(joined.outcome(), "joined");
        assert_eq!(joined.execution_id(), Some(&id));
        let response = joined.into_response(HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(IDEMPOTENT_REPLAYED).is_none());
        assert_eq!(Answer::Joined(id).deferred().outcome(), "joined");
    }

    #[test]
    fn every_answer_is_uncacheable_json() {
        let answers = [
            Answer::NotFound,
            Answer::MethodNotAllowed,
            Answer::InvalidToken,
            Answer::Unavailable(Duration::ZERO),
            Answer::Internal,
            Answer::Started(ExecutionId::new_v7()),
        ];
        for answer in answers {
            let response = answer.into_response(HeaderMap::new());
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        }
    }

    #[test]
    fn no_request_header_is_left_in_the_answer() {
        let mut request_headers = HeaderMap::new();
        request_headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer atk_secret"),
        );
        request_headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        request_headers.append("x-custom", HeaderValue::from_static("one"));
        request_headers.append("x-custom", HeaderValue::from_static("two"));
        let response = Answer::MissingCredentials.into_response(request_headers);
        let mut names: Vec<_> = response.headers().keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["cache-control", "content-type", "www-authenticate"]);
        assert_eq!(response.headers().len(), 3);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn discord_answers() {
        let id = ExecutionId::from(uuid::Uuid::nil());
        let body = |answer: Answer| {
            let response = answer.into_response(HeaderMap::new());
            let replayed = response.headers().contains_key(IDEMPOTENT_REPLAYED);
            (response.into_body(), replayed)
        };
        use http_body_util::BodyExt;
        let text = |answer| {
            let (body, replayed) = body(answer);
            let bytes = futures_util::FutureExt::now_or_never(body.collect())
                .unwrap()
                .unwrap()
                .to_bytes();
            (String::from_utf8(bytes.to_vec()).unwrap(), replayed)
        };
        assert_eq!(text(Answer::Pong), (r#"{"type":1}"#.to_owned(), false));
        assert_eq!(
            text(Answer::Started(id.clone()).deferred()),
            (
                r#"{"type":5,"executionId":"00000000-0000-0000-0000-000000000000"}"#.to_owned(),
                false
            )
        );
        assert!(
            text(Answer::Replayed(id).deferred()).1,
            "a replay is still marked"
        );
        let skipped = Answer::Skipped {
            message: Cow::Borrowed("trigger is disabled"),
            action: Some("triage".into()),
        };
        assert_eq!(
            text(skipped.deferred()).0,
            r#"{"type":5,"executionId":"skipped","message":"trigger is disabled","action":"triage"}"#
        );
        assert_eq!(Answer::Internal.deferred().outcome(), "internal_error");
    }

    #[test]
    fn retry_after_is_never_zero() {
        let response = Answer::Unavailable(Duration::ZERO).into_response(HeaderMap::new());
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }
}
