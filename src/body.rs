//! The request body: its size, its content type, and reading it within the limit.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::BoxError;

/// How the body is to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `application/json`, `*/*+json`, or no content type at all.
    Json,
    /// `application/x-www-form-urlencoded` (Slack only).
    Form,
}

/// Why a body could not be taken.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the limit, by `Content-Length` or while streaming.
    TooLarge,
    /// The content type is not one the source sends.
    UnsupportedType,
    /// The client's stream failed (it disconnected, or sent a broken chunked encoding).
    Unreadable(BoxError),
}

/// Refuses a declared `Content-Length` over `limit` before anything is read.
pub(crate) fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| parse_length(value.as_bytes()));
    match declared {
        Some(length) if length > limit as u64 => Err(BodyError::TooLarge),
        _ => Ok(()),
    }
}

/// A `Content-Length` value: decimal digits, optionally surrounded by spaces or tabs; anything
/// else (or a number beyond `u64`) is not a length.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |length, &digit| {
        let digit = digit.checked_sub(b'0').filter(|digit| *digit <= 9)?;
        length.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The body kind for the declared content type; parameters such as `charset` are allowed.
pub(crate) fn kind(headers: &HeaderMap, accepts_form: bool) -> Result<BodyKind, BodyError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    // What nearly every sender declares, recognised without taking the value apart.
    if value.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return Ok(BodyKind::Json);
    }
    let value = value.to_str().map_err(|_| BodyError::UnsupportedType)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    let (kind, subtype) = essence.split_once('/').ok_or(BodyError::UnsupportedType)?;
    let is_json = subtype.eq_ignore_ascii_case("json") && kind.eq_ignore_ascii_case("application")
        || !kind.is_empty() && has_json_suffix(subtype);
    if is_json {
        Ok(BodyKind::Json)
    } else if accepts_form
        && kind.eq_ignore_ascii_case("application")
        && subtype.eq_ignore_ascii_case("x-www-form-urlencoded")
    {
        Ok(BodyKind::Form)
    } else {
        Err(BodyError::UnsupportedType)
    }
}

fn has_json_suffix(subtype: &str) -> bool {
    subtype.len() > 5
        && subtype
            .get(subtype.len() - 5..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

/// Reads the whole body, failing as soon as it passes `limit` bytes. A body that arrives in one
/// frame (the usual case for webhooks) is handed on without a copy.
pub(crate) async fn read<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is::<LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Unreadable(error)
            }
        })?;
        // Trailers carry nothing the pipeline reads.
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let chunk = data.copy_to_bytes(data.remaining());
        match (&first, &mut joined) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let expected = body.size_hint().lower() as usize;
                let mut buffer =
                    BytesMut::with_capacity((head.len() + chunk.len()).max(expected).min(limit));
                buffer.extend_from_slice(head);
                buffer.extend_from_slice(&chunk);
                joined = Some(buffer);
            }
            (Some(_), Some(buffer)) => buffer.extend_from_slice(&chunk),
        }
    }
    Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[tokio::test]
    async fn one_frame_is_handed_on_without_a_copy_and_several_are_joined() {
        let body = Bytes::from(br#"{"type":"one frame"}"#.to_vec());
        let address = body.as_ptr();
        let read_back = read(http_body_util::Full::new(body), 1024).await.unwrap();
        assert_eq!(read_back.as_ptr(), address);

        let frames = || {
            let frames = ["{\"a\":", "1}"].map(|chunk| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(
                    chunk.as_bytes(),
                )))
            });
            http_body_util::StreamBody::new(futures_util::stream::iter(frames))
        };
        assert_eq!(&read(frames(), 1024).await.unwrap()[..], b"{\"a\":1}");
        assert!(matches!(read(frames(), 5).await, Err(BodyError::TooLarge)));
    }

    fn typed(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn json_types_are_accepted() {
        for value in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
            "application/cloudevents+json; charset=UTF-8",
        ] {
            assert_eq!(
                kind(&typed(value), false).unwrap(),
                BodyKind::Json,
                "{value}"
            );
        }
        assert_eq!(kind(&HeaderMap::new(), false).unwrap(), BodyKind::Json);
    }

    #[test]
    fn other_types_are_refused() {
        for value in [
            "text/plain",
            "application/xml",
            "json",
            "application/+json",
            "/json",
            "application/jsonx",
        ] {
            assert!(
                matches!(kind(&typed(value), true), Err(BodyError::UnsupportedType)),
                "{value}"
            );
        }
    }

    #[test]
    fn forms_only_where_the_source_sends_them() {
        let form = typed("application/x-www-form-urlencoded");
        assert_eq!(kind(&form, true).unwrap(), BodyKind::Form);
        assert!(matches!(
            kind(&form, false),
            Err(BodyError::UnsupportedType)
        ));
    }

    #[test]
    fn declared_length_over_the_limit() {
        let mut headers = HeaderMap::new();
        assert!(check_declared_length(&headers, 10).is_ok());
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(check_declared_length(&headers, 10).is_ok());
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(matches!(
            check_declared_length(&headers, 10),
            Err(BodyError::TooLarge)
        ));
    }

    #[test]
    fn lengths_are_decimal_digits_only() {
        assert_eq!(parse_length(b"240"), Some(240));
        assert_eq!(parse_length(b" 240\t"), Some(240));
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b" ",
            b"+5",
            b"-1",
            b"1a",
            b"1 2",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
