//! `db.query.text` without values: literals become `?`, comments go.
//!
//! Statements bind their values as parameters (`$1`), which stay as they
//! are; this makes sure a literal written into SQL by hand (`WHERE id =
//! 'user123'`, `LIMIT 10`) never reaches a span either. Each distinct text is
//! sanitised once and kept ([`QueryTexts`]), so a statement that runs a
//! thousand times is scanned once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most distinct statement texts kept. Statements are a fixed set in a
/// service; a text built at run time (which should not happen) is sanitised
/// each time once the set is full, rather than growing it without bound.
const MAX_KEPT: usize = 256;

/// The sanitised texts of the statements seen so far.
#[derive(Debug, Default)]
pub(crate) struct QueryTexts(RwLock<HashMap<Box<str>, Arc<str>>>);

impl QueryTexts {
    /// `sql` sanitised, from the set when it was seen before.
    pub(crate) fn get(&self, sql: &str) -> Arc<str> {
        if let Some(text) = self.0.read().ok().and_then(|m| m.get(sql).cloned()) {
            return text;
        }
        let text: Arc<str> = sanitize(sql).into();
        if let Ok(mut kept) = self.0.write()
            && kept.len() < MAX_KEPT
        {
            kept.insert(sql.into(), text.clone());
        }
        text
    }
}

/// `sql` with every string, number, bit-string and dollar-quoted literal
/// replaced by `?` and comments removed; identifiers (plain or quoted),
/// keywords, operators, casts and `$n` parameters kept.
pub(crate) fn sanitize(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // Copies the unchanged run up to `i` in one piece.
    let mut copied = 0;
    let flush = |out: &mut String, from: usize, to: usize| out.push_str(&sql[from..to]);
    while i < b.len() {
        let c = b[i];
        let prev_is_word = i > 0 && is_word(b[i - 1]);
        let (skip_to, replacement) = match c {
            b'\'' => (quoted_end(b, i + 1, b'\''), Some("?")),
            // E'..', B'..', X'..', N'..', U&'..' string constants.
            b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N'
                if !prev_is_word && b.get(i + 1) == Some(&b'\'') =>
            {
                (escaped_end(b, i + 2, c), Some("?"))
            }
            b'"' => (quoted_end(b, i + 1, b'"'), None),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                (end, Some(""))
            }
            b'/' if b.get(i + 1) == Some(&b'*') => (block_comment_end(b, i + 2), Some(" ")),
            b'$' => match dollar_tag_end(b, i) {
                // `$n`: a parameter.
                None if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    let end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    (end, None)
                }
                None => (i + 1, None),
                Some(tag_end) => {
                    let tag = &b[i..tag_end];
                    let end = find(b, tag_end, tag).map_or(b.len(), |at| at + tag.len());
                    (end, Some("?"))
                }
            },
            b'0'..=b'9' if !prev_is_word => (number_end(b, i), Some("?")),
            b'.' if !prev_is_word && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                (number_end(b, i), Some("?"))
            }
            _ if is_word(c) => {
                let end = i + b[i..].iter().take_while(|&&c| is_word(c)).count();
                (end, None)
            }
            _ => (i + 1, None),
        };
        if let Some(replacement) = replacement {
            flush(&mut out, copied, i);
            out.push_str(replacement);
            copied = skip_to;
        }
        i = skip_to;
    }
    flush(&mut out, copied, b.len());
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// After a literal quoted with `quote` (doubled quotes inside are escapes).
fn quoted_end(b: &[u8], mut i: usize, quote: u8) -> usize {
    while i < b.len() {
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// After an `E'..'`-style literal; only `E` strings take backslash escapes.
fn escaped_end(b: &[u8], mut i: usize, prefix: u8) -> usize {
    if !prefix.eq_ignore_ascii_case(&b'e') {
        return quoted_end(b, i, b'\'');
    }
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// After a `/* */` comment, which Postgres lets nest.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1;
    while i < b.len() {
        if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The end of a dollar-quote opening tag (`$$` or `$tag$`) at `i`, if one is.
fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let name = b[i + 1..]
        .iter()
        .take_while(|&&c| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || c.is_ascii_digit())
        .count();
    let tag_starts_with_digit = b.get(i + 1).is_some_and(u8::is_ascii_digit);
    (!tag_starts_with_digit && b.get(i + 1 + name) == Some(&b'$')).then_some(i + 2 + name)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// After a numeric constant: digits, a fraction, an exponent, or a hex,
/// octal or binary integer, with `_` separators.
fn number_end(b: &[u8], mut i: usize) -> usize {
    let digits = |b: &[u8], i: usize| {
        i + b[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
    };
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
        return digits(b, i + 2);
    }
    i += b[i..]
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'_')
        .count();
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i += 1;
        i += b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'_')
            .count();
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i += 1 + sign;
            i += b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_identifiers_and_casts_stay_as_they_are() {
        for sql in [
            "SELECT id, name FROM users WHERE id = $1",
            "SELECT $1::text AS name",
            "INSERT INTO order_items (order_id, product_id, quantity, price_cents) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::int8[])",
            "UPDATE orders SET status = $2 WHERE id = $1 AND status = $3",
            "SELECT \"col'1\", t2.x FROM t2 WHERE v10 = $10",
            "SELECT a FROM b FOR UPDATE SKIP LOCKED",
        ] {
            assert_eq!(sanitize(sql), sql);
        }
    }

    #[test]
    fn literals_become_a_question_mark() {
        let cases = [
            (
                "SELECT * FROM users WHERE id = 'user123'",
                "SELECT * FROM users WHERE id = ?",
            ),
            ("SELECT 'it''s', 'a'", "SELECT ?, ?"),
            ("SELECT E'a\\'b', e'c'", "SELECT ?, ?"),
            ("SELECT B'1010', X'1F', N'n'", "SELECT ?, ?, ?"),
            (
                "SELECT 1, 2.5, .5, 1e10, 1.5E-3, 0x1F, 1_000",
                "SELECT ?, ?, ?, ?, ?, ?, ?",
            ),
            (
                "SELECT * FROM t LIMIT 10 OFFSET 20",
                "SELECT * FROM t LIMIT ? OFFSET ?",
            ),
            ("SELECT $$secret$$, $tag$x$y$tag$", "SELECT ?, ?"),
            ("SELECT 1 -- user 42\nFROM t", "SELECT ? \nFROM t"),
            ("SELECT /* id = 7 /* nested */ */ 3", "SELECT   ?"),
            (
                "SELECT x FROM t WHERE n = -5",
                "SELECT x FROM t WHERE n = -?",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(sanitize(sql), want, "{sql}");
        }
    }

    #[test]
    fn an_unterminated_literal_hides_the_rest() {
        assert_eq!(sanitize("SELECT 'abc"), "SELECT ?");
        assert_eq!(sanitize("SELECT $$abc"), "SELECT ?");
        assert_eq!(sanitize("SELECT 1 /* abc"), "SELECT ?  ");
    }

    #[test]
    fn texts_are_kept_once_and_the_set_is_bounded() {
        let texts = QueryTexts::default();
        let a = texts.get("SELECT 1");
        let b = texts.get("SELECT 1");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "SELECT ?");
        for n in 0..MAX_KEPT + 10 {
            assert_eq!(
                &*texts.get(&format!("SELECT {n} AS x{n}")),
                format!("SELECT ? AS x{n}")
            );
        }
        assert_eq!(texts.0.read().unwrap().len(), MAX_KEPT);
    }
}
