//! W3C Baggage (<https://www.w3.org/TR/baggage/>): the `baggage` header read
//! and written in one pass.
//!
//! The SDK's `BaggagePropagator` builds a `String` per member and joins them
//! when it writes, and on reading collects each member's properties into a
//! vector and allocates every name, value and property twice; under
//! callgrind it was the largest part of order-service's propagation cost
//! (the repository's docs/performance.md lists what was measured and how).
//! The rules here:
//!
//! - Read: every `baggage` header of a request, joined in order like one
//!   comma-separated list (the SDK reads only the first). A list longer than
//!   8192 bytes is dropped whole (the specification lets a platform drop what
//!   exceeds its limits); at most the first 64 members are read. A member is
//!   `name = value` with optional whitespace around each, then `;`-separated
//!   properties; name, value and properties are percent-decoded. A member
//!   without `=`, with an empty name or with bytes that do not decode to
//!   UTF-8 is skipped, the rest of the list kept. A value may hold `=` (the
//!   specification's `baggage-octet` includes it; the SDK cut the value there).
//! - Written: `name=value` members joined by `,`, name and value trimmed and
//!   percent-encoded where they hold anything outside `baggage-octet`, `%`
//!   (which the specification requires) or `=` (so readers that cut at `=`
//!   still get the whole value); properties after a `;` as the context holds
//!   them. `Baggage` itself keeps the limits on what a context can carry.

use std::borrow::Cow;

use opentelemetry::Context;
use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

const BAGGAGE: &str = "baggage";

/// Longest `baggage` list read, in bytes.
pub(crate) const MAX_LENGTH: usize = 8192;
/// Most list members read.
pub(crate) const MAX_MEMBERS: usize = 64;

/// The W3C `baggage` propagator (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct W3cBaggage;

impl TextMapPropagator for W3cBaggage {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let baggage = cx.baggage();
        if baggage.is_empty() {
            return;
        }
        let mut header = String::with_capacity(64);
        for (name, (value, metadata)) in baggage {
            if !header.is_empty() {
                header.push(',');
            }
            encode_into(&mut header, name.as_str().trim());
            header.push('=');
            encode_into(&mut header, value.as_str().trim());
            let properties = metadata.as_str().trim();
            if !properties.is_empty() {
                header.push(';');
                header.push_str(properties);
            }
        }
        injector.set(BAGGAGE, header);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(first) = extractor.get(BAGGAGE) else {
            return cx.clone();
        };
        let list: Cow<'_, str> = match extractor.get_all(BAGGAGE) {
            Some(all) if all.len() > 1 => Cow::Owned(all.join(",")),
            _ => Cow::Borrowed(first),
        };
        if list.len() > MAX_LENGTH {
            return cx.clone();
        }
        cx.with_baggage(list.split(',').take(MAX_MEMBERS).filter_map(member))
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(fields())
    }
}

fn fields() -> &'static [String] {
    static NAMES: std::sync::OnceLock<[String; 1]> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| [BAGGAGE.to_owned()])
}

/// One list member, or `None` to skip it.
fn member(member: &str) -> Option<KeyValueMetadata> {
    let (pair, properties) = match member.split_once(';') {
        Some((pair, properties)) => (pair, Some(properties)),
        None => (member, None),
    };
    let (name, value) = pair.split_once('=')?;
    let name = decode(name.trim())?;
    if name.is_empty() {
        return None;
    }
    let value = decode(value.trim())?;
    let metadata = match properties {
        None => String::new(),
        Some(properties) => {
            let mut joined = String::new();
            for property in properties.split(';') {
                let Some(property) = decode(property) else {
                    continue;
                };
                if !joined.is_empty() {
                    joined.push(';');
                }
                joined.push_str(property.trim());
            }
            joined
        }
    };
    Some(KeyValueMetadata::new(
        name.into_owned(),
        value.into_owned(),
        metadata,
    ))
}

/// Whether `byte` is written as is: `baggage-octet` less `%` and `=`.
const fn plain_byte(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C | 0x3E..=0x5B | 0x5D..=0x7E)
        && byte != b'%'
}

/// [`plain_byte`] of every byte, looked up rather than worked out per byte.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = plain_byte(byte as u8);
        byte += 1;
    }
    table
};

fn plain(byte: u8) -> bool {
    PLAIN[usize::from(byte)]
}

fn encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    for (i, byte) in s.bytes().enumerate() {
        if plain(byte) {
            continue;
        }
        // Plain bytes are ASCII, so a run of them starts and ends on
        // character boundaries; the bytes of a multi-byte character are
        // encoded one by one.
        if start < i {
            out.push_str(&s[start..i]);
        }
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xF)]));
        start = i + 1;
    }
    if start < s.len() {
        out.push_str(&s[start..]);
    }
}

/// Percent-decoded `s`, borrowed when it holds no `%`; `None` when the bytes
/// are not UTF-8. A `%` not followed by two hex digits stays as it is.
fn decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageMetadata;
    use opentelemetry_sdk::propagation::BaggagePropagator;
    use std::collections::HashMap;

    fn extract(headers: &[&str]) -> Vec<(String, String, String)> {
        struct Headers<'a>(&'a [&'a str]);
        impl Extractor for Headers<'_> {
            fn get(&self, key: &str) -> Option<&str> {
                (key == BAGGAGE).then(|| self.0.first().copied()).flatten()
            }
            fn keys(&self) -> Vec<&str> {
                vec![BAGGAGE]
            }
            fn get_all(&self, key: &str) -> Option<Vec<&str>> {
                (key == BAGGAGE && !self.0.is_empty()).then(|| self.0.to_vec())
            }
        }
        let cx = W3cBaggage.extract(&Headers(headers));
        let mut members: Vec<_> = cx
            .baggage()
            .iter()
            .map(|(k, (v, m))| (k.to_string(), v.to_string(), m.as_str().to_owned()))
            .collect();
        members.sort();
        members
    }

    fn sdk_extract(header: &str) -> Vec<(String, String, String)> {
        let map: HashMap<String, String> = [(BAGGAGE.to_owned(), header.to_owned())].into();
        let cx = BaggagePropagator::new().extract(&map);
        let mut members: Vec<_> = cx
            .baggage()
            .iter()
            .map(|(k, (v, m))| (k.to_string(), v.to_string(), m.as_str().to_owned()))
            .collect();
        members.sort();
        members
    }

    fn inject(cx: &Context) -> Option<String> {
        let mut map = HashMap::new();
        W3cBaggage.inject_context(cx, &mut map);
        map.remove(BAGGAGE)
    }

    #[test]
    fn well_formed_lists_read_as_the_sdk_reads_them() {
        for header in [
            "user.id=user123",
            "user.id=user123,order.id=o-1",
            "key1 =   val1,  key2 =val2   ",
            "key1=val1;prop1,key2=val2;prop2=x; prop3",
            "name=%E2%9C%93%20ok,other=a%2Cb%3Bc",
            "k=v;p1=%20spaced",
        ] {
            assert_eq!(extract(&[header]), sdk_extract(header), "{header}");
        }
    }

    #[test]
    fn what_it_writes_the_sdk_reads_back_unchanged() {
        let cx = Context::new().with_baggage(vec![
            KeyValueMetadata::new("user.id", "user123", BaggageMetadata::default()),
            KeyValueMetadata::new("note", "a b,c;d=e%f\"g\\h✓", BaggageMetadata::default()),
            KeyValueMetadata::new("with.props", "v", "p1;p2=x"),
        ]);
        let header = inject(&cx).unwrap();
        assert!(header.contains("user.id=user123"), "{header}");
        assert!(
            header.contains("note=a%20b%2Cc%3Bd%3De%25f%22g%5Ch%E2%9C%93"),
            "{header}"
        );
        assert!(header.contains("with.props=v;p1;p2=x"), "{header}");
        let want = vec![
            (
                "note".to_owned(),
                "a b,c;d=e%f\"g\\h✓".to_owned(),
                String::new(),
            ),
            ("user.id".to_owned(), "user123".to_owned(), String::new()),
            (
                "with.props".to_owned(),
                "v".to_owned(),
                "p1;p2=x".to_owned(),
            ),
        ];
        assert_eq!(sdk_extract(&header), want);
        assert_eq!(extract(&[&header]), want);
    }

    #[test]
    fn empty_baggage_writes_no_header() {
        assert_eq!(inject(&Context::new()), None);
    }

    #[test]
    fn several_headers_are_one_list_in_order() {
        assert_eq!(
            extract(&["user.id=u1", "order.id=o-1"]),
            [
                ("order.id".to_owned(), "o-1".to_owned(), String::new()),
                ("user.id".to_owned(), "u1".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn a_value_keeps_its_equals_signs_and_a_lone_percent() {
        assert_eq!(
            extract(&["token=a=b==,pct=50%"]),
            [
                ("pct".to_owned(), "50%".to_owned(), String::new()),
                ("token".to_owned(), "a=b==".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn bad_members_are_skipped_and_the_rest_kept() {
        let got = extract(&[";;==,novalue,=v,bad=%FF%FE,user.id=u1,\u{7f}"]);
        assert_eq!(
            got,
            [("user.id".to_owned(), "u1".to_owned(), String::new())]
        );
    }

    #[test]
    fn the_limits_hold() {
        let many: Vec<String> = (0..200).map(|i| format!("k{i}=v")).collect();
        assert_eq!(extract(&[&many.join(",")]).len(), MAX_MEMBERS);
        let big = format!("user.id=u1,blob={}", "x".repeat(MAX_LENGTH));
        assert!(extract(&[&big]).is_empty());
        let fits = format!("user.id=u1,blob={}", "x".repeat(4000));
        assert_eq!(extract(&[&fits]).len(), 2);
        // The limit is on the joined list.
        let half = format!("blob={}", "x".repeat(MAX_LENGTH / 2));
        assert!(extract(&[&half, &half]).is_empty());
    }

    #[test]
    fn without_a_header_the_context_is_unchanged() {
        let cx = Context::new().with_baggage(vec![KeyValue::new("user.id", "u1")]);
        let map: HashMap<String, String> = HashMap::new();
        let got = W3cBaggage.extract_with_context(&cx, &map);
        assert_eq!(got.baggage().get("user.id").map(|v| v.as_str()), Some("u1"));
    }
}
