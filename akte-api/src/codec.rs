//! The protobuf codec of akte's generated services and clients (`build.rs` names it):
//! tonic-prost's codec, except that a message that does not decode is answered
//! INVALID_ARGUMENT with akte's `ErrorInfo` (reason INVALID_FIELD, metadata `field` the
//! field path prost names, such as `file.subject`) instead of tonic-prost's bare INTERNAL:
//! the fault is the sender's, and the sender should learn which field it got wrong.
//!
//! The same codec decodes responses in the client library; there a response that does not
//! decode is equally reported as INVALID_ARGUMENT, with the message saying so.

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstDecoder, ProstEncoder};

use bytes::Bytes;
use prost::Message;
use tonic::Code;

use crate::pb::akte::v1::ErrorReason;
use crate::pb::google::rpc;

/// The codec (see the module documentation).
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _pd: std::marker::PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        StrictCodec {
            _pd: std::marker::PhantomData,
        }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder {
            inner: ProstDecoder::default(),
        }
    }
}

/// The decoder of [`StrictCodec`].
#[derive(Debug, Clone)]
pub struct StrictDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| malformed_message(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The status for a message that does not decode: INVALID_ARGUMENT with the details the
/// server gives every invalid field (`ErrorInfo` with reason INVALID_FIELD and metadata
/// `field`, and a `BadRequest` field violation). Built here, not by the server's error
/// mapping, because the generated clients use this codec too.
pub fn malformed_message(e: &prost::DecodeError) -> Status {
    let text = e.to_string();
    let mut field = field_path(&text);
    if field.is_empty() {
        field = "request".to_owned();
    }
    let reason = format!("the message does not decode as protobuf: {text}");
    let message = format!("invalid {field}: {reason}");
    let info = rpc::ErrorInfo {
        reason: ErrorReason::InvalidField.as_str_name().to_owned(),
        domain: crate::DOMAIN.to_owned(),
        metadata: [("field".to_owned(), field.clone())].into_iter().collect(),
    };
    let bad = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field,
            description: reason,
            reason: ErrorReason::InvalidField.as_str_name().to_owned(),
            localized_message: None,
        }],
    };
    let any = |name: &str, value: Vec<u8>| prost_types::Any {
        type_url: format!("type.googleapis.com/{name}"),
        value,
    };
    let status = rpc::Status {
        code: Code::InvalidArgument as i32,
        message: message.clone(),
        details: vec![
            any("google.rpc.ErrorInfo", info.encode_to_vec()),
            any("google.rpc.BadRequest", bad.encode_to_vec()),
        ],
    };
    Status::with_details(
        Code::InvalidArgument,
        message,
        Bytes::from(status.encode_to_vec()),
    )
}

/// The field path in prost's error text, outermost first: prost writes its stack as
/// `Inner.field: Outer.field: description`, innermost first.
fn field_path(text: &str) -> String {
    let rest = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(text);
    let mut fields: Vec<&str> = rest
        .split(": ")
        .map_while(|part| {
            let (message, field) = part.split_once('.')?;
            let ident =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            (ident(message) && ident(field)).then_some(field)
        })
        .collect();
    fields.reverse();
    fields.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::akte::v1 as pb;
    use prost::Message;

    #[test]
    fn a_bad_nested_field_is_named() {
        // CreateFileRequest { file (2): File { plan_unit (2): invalid UTF-8 } }
        let inner = [0x12u8, 0x02, 0xff, 0xfe];
        let mut msg = vec![0x12u8, inner.len() as u8];
        msg.extend_from_slice(&inner);
        let e = pb::CreateFileRequest::decode(&msg[..]).unwrap_err();
        let s = malformed_message(&e);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let info = crate::client::error_info(&s).unwrap();
        assert_eq!(info.reason, "INVALID_FIELD");
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("file.plan_unit"),
            "{s:?}"
        );
        // A varint where the string `name` (field 1) belongs names that field.
        let e = pb::GetFileRequest::decode(&[0x08u8, 0x01][..]).unwrap_err();
        let info = crate::client::error_info(&malformed_message(&e)).unwrap();
        assert_eq!(info.metadata.get("field").map(String::as_str), Some("name"));
        // Tag 0 is no field at all.
        let e = pb::GetFileRequest::decode(&[0x00u8][..]).unwrap_err();
        let info = crate::client::error_info(&malformed_message(&e)).unwrap();
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("request")
        );
    }

    #[test]
    fn field_paths_are_read_from_prost_text() {
        assert_eq!(
            field_path("failed to decode Protobuf message: File.subject: CreateFileRequest.file: invalid string value: data is not UTF-8 encoded"),
            "file.subject"
        );
        assert_eq!(
            field_path("failed to decode Protobuf message: buffer underflow"),
            ""
        );
        assert_eq!(field_path(""), "");
    }
}
