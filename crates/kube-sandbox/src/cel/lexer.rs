//! CEL tokenizer: numbers, strings (single, double and triple quoted, raw), identifiers,
//! keywords and operators.

use super::CelError;

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
    Ident(String),
    True,
    False,
    Null,
    In,
    /// Punctuation and operators, as written.
    Op(&'static str),
}

const OPS: [&str; 22] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".", ",",
    "(", ")", "[", "]",
];

/// Splits a rule into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Token>, CelError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '{' || c == '}' {
            return Err(CelError::Unsupported("map literals".into()));
        }
        if c.is_ascii_digit() {
            i = number(&chars, i, &mut out)?;
            continue;
        }
        let raw = (c == 'r' || c == 'R') && matches!(chars.get(i + 1), Some('"' | '\''));
        if c == '"' || c == '\'' || raw {
            let start = if raw { i + 1 } else { i };
            let (s, next) = string(&chars, start, raw)?;
            out.push(Token::Str(s));
            i = next;
            continue;
        }
        if c == 'b' && matches!(chars.get(i + 1), Some('"' | '\'')) {
            return Err(CelError::Unsupported("bytes literals".into()));
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "true" => Token::True,
                "false" => Token::False,
                "null" => Token::Null,
                "in" => Token::In,
                _ => Token::Ident(word),
            });
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                out.push(Token::Op(op));
                i += op.len();
            }
            None => return Err(CelError::Syntax(format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

fn number(chars: &[char], mut i: usize, out: &mut Vec<Token>) -> Result<usize, CelError> {
    let start = i;
    if chars[i] == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
        i += 2;
        let hs = i;
        while i < chars.len() && chars[i].is_ascii_hexdigit() {
            i += 1;
        }
        let digits: String = chars[hs..i].iter().collect();
        let v = i64::from_str_radix(&digits, 16).map_err(|e| CelError::Syntax(e.to_string()))?;
        out.push(Token::Int(v));
        return Ok(i);
    }
    let mut is_double = false;
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
        is_double = true;
        i += 1;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
        is_double = true;
        i += 1;
        if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
            i += 1;
        }
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
    }
    let text: String = chars[start..i].iter().collect();
    if is_double {
        out.push(Token::Double(
            text.parse()
                .map_err(|_| CelError::Syntax(format!("bad number {text}")))?,
        ));
    } else if i < chars.len() && (chars[i] == 'u' || chars[i] == 'U') {
        i += 1;
        out.push(Token::UInt(
            text.parse()
                .map_err(|_| CelError::Syntax(format!("bad number {text}")))?,
        ));
    } else {
        out.push(Token::Int(text.parse().map_err(|_| {
            CelError::Syntax(format!("integer out of range: {text}"))
        })?));
    }
    Ok(i)
}

// Scanner state with the lexer's short names: quote `q`, index `i`, text `s`, char `c`, escape `e`.
#[allow(clippy::many_single_char_names)]
fn string(chars: &[char], start: usize, raw: bool) -> Result<(String, usize), CelError> {
    let q = chars[start];
    let triple = chars.get(start + 1) == Some(&q) && chars.get(start + 2) == Some(&q);
    let mut i = start + if triple { 3 } else { 1 };
    let mut s = String::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(CelError::Syntax("unterminated string literal".into()));
        };
        if triple {
            if c == q && chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q) {
                return Ok((s, i + 3));
            }
        } else if c == q {
            return Ok((s, i + 1));
        } else if c == '\n' {
            return Err(CelError::Syntax("newline in string literal".into()));
        }
        if c == '\\' && !raw {
            let Some(&e) = chars.get(i + 1) else {
                return Err(CelError::Syntax("unterminated escape".into()));
            };
            s.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' => '\\',
                '\'' => '\'',
                '"' => '"',
                '`' => '`',
                '?' => '?',
                other => return Err(CelError::Unsupported(format!("string escape \\{other}"))),
            });
            i += 2;
        } else {
            s.push(c);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = tokenize("self.a == 'x' && size(self) <= 10u || 1.5 > 0x10").expect("tokens");
        assert_eq!(t[0], Token::Ident("self".into()));
        assert_eq!(t[1], Token::Op("."));
        assert_eq!(t[3], Token::Op("=="));
        assert_eq!(t[4], Token::Str("x".into()));
        assert_eq!(t[5], Token::Op("&&"));
        assert!(t.contains(&Token::UInt(10)));
        assert!(t.contains(&Token::Double(1.5)));
        assert!(t.contains(&Token::Int(16)));
    }

    #[test]
    fn strings() {
        assert_eq!(
            tokenize(r#""a\"b""#).expect("ok"),
            vec![Token::Str("a\"b".into())]
        );
        assert_eq!(
            tokenize(r"r'\d'").expect("ok"),
            vec![Token::Str("\\d".into())]
        );
        assert_eq!(
            tokenize("'''x'y'''").expect("ok"),
            vec![Token::Str("x'y".into())]
        );
        assert!(tokenize("'x").is_err());
        assert!(tokenize("{'a': 1}").is_err());
    }
}
