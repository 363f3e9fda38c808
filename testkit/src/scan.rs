//! Looks through exported spans and log lines for what must never be there:
//! e-mail addresses, credentials and session headers, passwords, connection
//! strings, and values that belong to queries (URL query strings, SQL
//! literals). The end-to-end and fault tests run it over everything they
//! collected.

use tracectl::model::Span;

/// One finding: where, and the offending text (cut short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub place: String,
    pub what: &'static str,
    pub text: String,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}: {:?}", self.what, self.place, self.text)
    }
}

/// Attribute keys that would carry a header or secret verbatim.
const FORBIDDEN_KEYS: [&str; 6] = [
    "http.request.header.authorization",
    "http.request.header.cookie",
    "http.request.header.proxy-authorization",
    "http.response.header.set-cookie",
    "url.query",
    "db.connection_string",
];

/// What `text` holds that must not leave the process, if anything.
pub fn classify(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    if contains_email(text) {
        return Some("e-mail address");
    }
    if lower.contains("postgres://") || lower.contains("postgresql://") {
        return Some("connection string");
    }
    if lower.contains("bearer ") || lower.contains("authorization:") {
        return Some("credentials");
    }
    if lower.contains("cookie:") || lower.contains("session=") {
        return Some("cookie");
    }
    if lower.contains("password") || lower.contains("passwd") {
        return Some("password");
    }
    None
}

fn contains_email(text: &str) -> bool {
    let bytes = text.as_bytes();
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b"-.".contains(&b);
    bytes.iter().enumerate().any(|(i, &b)| {
        if b != b'@' || i == 0 || !local(bytes[i - 1]) {
            return false;
        }
        let rest = &bytes[i + 1..];
        let end = rest.iter().position(|&c| !domain(c)).unwrap_or(rest.len());
        let host = &text[i + 1..i + 1 + end];
        let host = host.trim_end_matches('.');
        match host.rsplit_once('.') {
            Some((name, tld)) => {
                !name.is_empty() && tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic())
            }
            None => false,
        }
    })
}

/// A SQL text with a literal in it (`'...'` or a bare number compared): the
/// queries must be parameterised, so a literal means a value got in.
fn sql_has_literal(sql: &str) -> bool {
    if sql.contains('\'') {
        return true;
    }
    // `= 42`, `> 7`: a number right after a comparison operator.
    let b = sql.as_bytes();
    b.windows(3)
        .any(|w| matches!(w[0], b'=' | b'<' | b'>') && w[1] == b' ' && w[2].is_ascii_digit())
        || b.windows(2)
            .any(|w| matches!(w[0], b'=' | b'<' | b'>') && w[1].is_ascii_digit())
}

/// Every leak in `spans` (names, attributes, events, links' attributes).
pub fn spans(spans: &[Span]) -> Vec<Leak> {
    let mut out = Vec::new();
    for span in spans {
        let place = |field: &str| format!("{} span {:?} {field}", span.service, span.name);
        let mut check = |field: String, text: &str| {
            if let Some(what) = classify(text) {
                out.push(Leak {
                    place: field,
                    what,
                    text: text.chars().take(120).collect(),
                });
            }
        };
        check(place("name"), &span.name);
        for (key, value) in &span.attributes {
            check(place(key), value);
            check(place("attribute key"), key);
        }
        for event in &span.events {
            check(place("event name"), event);
        }
        for (event, key, value) in &span.event_attributes {
            check(place(&format!("event {event} {key}")), value);
        }
        for key in FORBIDDEN_KEYS {
            if span.attributes.contains_key(key) {
                out.push(Leak {
                    place: place(key),
                    what: "forbidden attribute",
                    text: span.attributes[key].chars().take(120).collect(),
                });
            }
        }
        if let Some(full) = span.attributes.get("url.full")
            && full.contains('?')
        {
            out.push(Leak {
                place: place("url.full"),
                what: "query string",
                text: full.clone(),
            });
        }
        if let Some(sql) = span.attributes.get("db.query.text")
            && sql_has_literal(sql)
        {
            out.push(Leak {
                place: place("db.query.text"),
                what: "SQL literal (a value, not a parameter)",
                text: sql.chars().take(160).collect(),
            });
        }
    }
    out
}

/// Every leak in log text, line by line; `source` names the log.
pub fn log(source: &str, text: &str) -> Vec<Leak> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            classify(line).map(|what| Leak {
                place: format!("{source} line {}", i + 1),
                what,
                text: line.chars().take(200).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tracectl::model::Kind;

    fn span(attrs: &[(&str, &str)]) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_id: None,
            service: "svc".into(),
            name: "GET /users/{id}".into(),
            kind: Kind::Server,
            start_ns: 0,
            duration_ns: 1,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            events: Vec::new(),
            event_attributes: Vec::new(),
            integers: Default::default(),
            links: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn clean_spans_pass() {
        let s = span(&[
            ("url.path", "/users/user123"),
            ("db.query.text", "SELECT id, name FROM users WHERE id = $1"),
            ("server.address", "127.0.0.1"),
            ("user.id", "user123"),
        ]);
        assert_eq!(spans(&[s]), vec![]);
    }

    #[test]
    fn each_kind_of_leak_is_found() {
        for (attrs, what) in [
            (vec![("user.email", "ada@example.com")], "e-mail address"),
            (
                vec![("http.request.header.authorization", "x")],
                "forbidden attribute",
            ),
            (vec![("note", "Bearer abc.def")], "credentials"),
            (vec![("note", "Cookie: session=1")], "cookie"),
            (vec![("db.user", "password=hunter2")], "password"),
            (
                vec![("error", "cannot reach postgres://postgres@db:5432/orders")],
                "connection string",
            ),
            (vec![("url.full", "http://x/api?token=1")], "query string"),
            (
                vec![("db.query.text", "SELECT * FROM users WHERE id = 'user123'")],
                "SQL literal (a value, not a parameter)",
            ),
            (
                vec![(
                    "db.query.text",
                    "UPDATE stock SET available = 7 WHERE id = $1",
                )],
                "SQL literal (a value, not a parameter)",
            ),
        ] {
            let found = spans(&[span(&attrs)]);
            assert!(
                found.iter().any(|l| l.what == what),
                "{attrs:?} should be a {what}: {found:?}"
            );
        }
    }

    #[test]
    fn events_are_scanned_too() {
        let mut s = span(&[]);
        s.events.push("exception".into());
        s.event_attributes.push((
            "exception".into(),
            "exception.message".into(),
            "mail bob@corp.io".into(),
        ));
        assert_eq!(spans(&[s])[0].what, "e-mail address");
    }

    #[test]
    fn log_lines_are_scanned_with_their_line_number() {
        let text = "{\"message\":\"ok\"}\n{\"message\":\"user ada@example.com\"}\n";
        let found = log("user-service.log", text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].place, "user-service.log line 2");
    }

    #[test]
    fn addresses_that_are_not_e_mail_are_not_flagged() {
        for text in [
            "@",
            "a@b",
            "user@localhost",
            "x @ y.com",
            "traceparent 00-ab@",
            "v1.2@3",
        ] {
            assert!(!contains_email(text), "{text}");
        }
        assert!(contains_email("write to a.b+c@mail.example.org."));
    }
}
