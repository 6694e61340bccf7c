//! Putting a caller's user name into LDAP text: a search filter (RFC 4515) or a DN (RFC 4514).
//! Adapters may restrict the characters of user names, but escaping never relies on that.
//!
//! Templates are filled in one pass, so a user name containing `{base_dn}` or `{user}` is just
//! text, never a placeholder.

/// Escape a value for an RFC 4515 filter: `*`, `(`, `)`, `\` and NUL become `\XX`. Everything
/// else (including non-ASCII UTF-8) is a literal in an assertion value.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => push_hex(&mut out, c),
            _ => out.push(c),
        }
    }
    out
}

/// Escape a value for an RFC 4514 attribute value in a DN: `"`, `+`, `,`, `;`, `<`, `=`, `>`,
/// `\` and NUL anywhere, `#` and space at the start, space at the end. Escaped as `\XX` (hex),
/// which every server parses, rather than `\c`.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '=' | '>' | '\\' | '\0')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            push_hex(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

fn push_hex(out: &mut String, c: char) {
    // Only ASCII characters are escaped here.
    let b = u32::from(c);
    out.push('\\');
    out.push(hex_digit(b >> 4));
    out.push(hex_digit(b & 0xf));
}

fn hex_digit(n: u32) -> char {
    char::from_digit(n & 0xf, 16).unwrap_or('0')
}

/// Fill `template`, replacing each `{name}` found in `values` with its value, in one pass.
/// Unknown `{…}` text is kept as is (adapters are checked for unknown placeholders on load).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    'outer: while let Some(open) = rest.find('{') {
        let (before, tail) = rest.split_at(open);
        out.push_str(before);
        for (name, value) in values {
            if let Some(after) = tail
                .strip_prefix('{')
                .and_then(|t| t.strip_prefix(*name))
                .and_then(|t| t.strip_prefix('}'))
            {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        out.push('{');
        rest = tail.get(1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
