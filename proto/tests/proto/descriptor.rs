//! Reads `FILE_DESCRIPTOR_SET` two ways: as `prost_types` for the schema, and
//! through a thin mirror that keeps the `google.api.http` option, which
//! `prost_types::MethodOptions` drops as an unknown extension.

use bulwark_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// The decoded descriptor set.
pub fn schema() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET does not decode as a google.protobuf.FileDescriptorSet")
}

/// The message with the given full name (no leading dot), nested ones included.
pub fn message(set: &FileDescriptorSet, full_name: &str) -> DescriptorProto {
    fn find(prefix: &str, messages: &[DescriptorProto], wanted: &str) -> Option<DescriptorProto> {
        messages.iter().find_map(|message| {
            let name = format!("{prefix}.{}", message.name());
            if name == wanted {
                Some(message.clone())
            } else {
                find(&name, &message.nested_type, wanted)
            }
        })
    }
    set.file
        .iter()
        .find_map(|file| find(file.package(), &file.message_type, full_name))
        .unwrap_or_else(|| panic!("message {full_name} is not in the descriptor set"))
}

/// The enum with the given full name (no leading dot), nested ones included.
pub fn enumeration(set: &FileDescriptorSet, full_name: &str) -> EnumDescriptorProto {
    fn find(
        prefix: &str,
        enums: &[EnumDescriptorProto],
        messages: &[DescriptorProto],
        wanted: &str,
    ) -> Option<EnumDescriptorProto> {
        enums
            .iter()
            .find(|e| format!("{prefix}.{}", e.name()) == wanted)
            .cloned()
            .or_else(|| {
                messages.iter().find_map(|m| {
                    let name = format!("{prefix}.{}", m.name());
                    find(&name, &m.enum_type, &m.nested_type, wanted)
                })
            })
    }
    set.file
        .iter()
        .find_map(|file| {
            find(
                file.package(),
                &file.enum_type,
                &file.message_type,
                full_name,
            )
        })
        .unwrap_or_else(|| panic!("enum {full_name} is not in the descriptor set"))
}

/// The field `name` of `message`.
pub fn field<'a>(message: &'a DescriptorProto, name: &str) -> &'a FieldDescriptorProto {
    message
        .field
        .iter()
        .find(|field| field.name() == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = message.field.iter().map(|f| f.name()).collect();
            panic!(
                "message {} has no field `{name}` (it has {names:?})",
                message.name()
            )
        })
}

/// One `google.api.http` binding of an RPC method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Full service name, e.g. `bulwark.identity.v1.IdentityService`.
    pub service: String,
    /// Method name, e.g. `CreateUser`.
    pub method: String,
    /// Full input message name without the leading dot.
    pub input_type: String,
    /// HTTP verb in upper case.
    pub verb: String,
    /// URL path template.
    pub path: String,
    /// The `body` mapping.
    pub body: String,
}

/// Every HTTP binding in the set (additional bindings included), and the
/// names of the methods that have none.
pub fn http_bindings() -> (Vec<Binding>, Vec<String>) {
    let raw = RawFileSet::decode(FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET does not decode into the option-keeping mirror");
    let mut bindings = Vec::new();
    let mut unbound = Vec::new();
    for file in &raw.file {
        for service in &file.service {
            let service_name = format!("{}.{}", file.package, service.name);
            for method in &service.method {
                let rule = method.options.as_ref().and_then(|o| o.http.as_ref());
                let Some(rule) = rule else {
                    unbound.push(format!("{service_name}/{}", method.name));
                    continue;
                };
                let mut rules = vec![rule.clone()];
                rules.extend(rule.additional_bindings.iter().cloned());
                for rule in rules {
                    let (verb, path) = match rule.pattern {
                        Some(Pattern::Get(p)) => ("GET".to_owned(), p),
                        Some(Pattern::Put(p)) => ("PUT".to_owned(), p),
                        Some(Pattern::Post(p)) => ("POST".to_owned(), p),
                        Some(Pattern::Delete(p)) => ("DELETE".to_owned(), p),
                        Some(Pattern::Patch(p)) => ("PATCH".to_owned(), p),
                        Some(Pattern::Custom(c)) => (c.kind, c.path),
                        None => panic!(
                            "{service_name}/{} has a google.api.http option without a verb",
                            method.name
                        ),
                    };
                    bindings.push(Binding {
                        service: service_name.clone(),
                        method: method.name.clone(),
                        input_type: method.input_type.trim_start_matches('.').to_owned(),
                        verb,
                        path,
                        body: rule.body,
                    });
                }
            }
        }
    }
    (bindings, unbound)
}

#[derive(Clone, PartialEq, Message)]
struct RawFileSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<RawFile>,
}

#[derive(Clone, PartialEq, Message)]
struct RawFile {
    #[prost(string, tag = "2")]
    package: String,
    #[prost(message, repeated, tag = "6")]
    service: Vec<RawService>,
}

#[derive(Clone, PartialEq, Message)]
struct RawService {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "2")]
    method: Vec<RawMethod>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMethod {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    input_type: String,
    #[prost(message, optional, tag = "4")]
    options: Option<RawMethodOptions>,
}

/// `google.protobuf.MethodOptions`, keeping only the `google.api.http`
/// extension (field 72295728 upstream).
#[derive(Clone, PartialEq, Message)]
struct RawMethodOptions {
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

/// `google.api.HttpRule` with the field numbers of upstream googleapis,
/// written here independently of `proto/google/api/http.proto` so that a
/// wrong number there makes these tests fail.
#[derive(Clone, PartialEq, Message)]
struct HttpRule {
    #[prost(oneof = "Pattern", tags = "2, 3, 4, 5, 6, 8")]
    pattern: Option<Pattern>,
    #[prost(string, tag = "7")]
    body: String,
    #[prost(message, repeated, tag = "11")]
    additional_bindings: Vec<HttpRule>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Pattern {
    #[prost(string, tag = "2")]
    Get(String),
    #[prost(string, tag = "3")]
    Put(String),
    #[prost(string, tag = "4")]
    Post(String),
    #[prost(string, tag = "5")]
    Delete(String),
    #[prost(string, tag = "6")]
    Patch(String),
    #[prost(message, tag = "8")]
    Custom(CustomPattern),
}

#[derive(Clone, PartialEq, Message)]
struct CustomPattern {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    path: String,
}
