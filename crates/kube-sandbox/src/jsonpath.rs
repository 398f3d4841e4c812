//! The JSONPath subset Kubernetes printer columns use (`.spec.instanceId`,
//! `.status.conditions[?(@.type=="Ready")].status`, `.items[0]`, `.a[*].b`, `['x.y']`),
//! parsed when a CRD is registered and evaluated for every Table row.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    /// `[?(@.a.b == "v")]` (or `!=`); `None` value means an existence test `[?(@.a)]`.
    Filter {
        path: Vec<String>,
        negate: bool,
        value: Option<Value>,
    },
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    source: String,
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses a path; the error says what is wrong.
    ///
    /// # Errors
    ///
    /// A message naming the problem when `src` is not a JSONPath this module understands.
    pub fn parse(src: &str) -> Result<Self, String> {
        let mut s = src.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            s = inner.trim();
        }
        s = s.strip_prefix('$').unwrap_or(s);
        let chars: Vec<char> = s.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    match name.as_str() {
                        "" if i == chars.len() && steps.is_empty() => {}
                        "" => return Err(format!("empty field name in {src:?}")),
                        "*" => steps.push(Step::Wildcard),
                        _ => steps.push(Step::Field(name)),
                    }
                }
                '[' => {
                    let close =
                        find_close(&chars, i).ok_or_else(|| format!("unclosed '[' in {src:?}"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(bracket(inner.trim(), src)?);
                    i = close + 1;
                }
                c => return Err(format!("unexpected {c:?} in {src:?}; paths start with '.'")),
            }
        }
        Ok(Self {
            source: src.to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// All values the path selects in `root`.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(f) => next.extend(v.get(f)),
                    Step::Index(i) => {
                        if let Value::Array(a) = v {
                            let idx = if *i < 0 {
                                i64::try_from(a.len()).unwrap_or(i64::MAX) + i
                            } else {
                                *i
                            };
                            next.extend(usize::try_from(idx).ok().and_then(|x| a.get(x)));
                        }
                    }
                    Step::Wildcard => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter {
                        path,
                        negate,
                        value,
                    } => {
                        if let Value::Array(a) = v {
                            next.extend(a.iter().filter(|item| {
                                let found = path.iter().try_fold(*item, |x, k| x.get(k));
                                match (found, value) {
                                    (None, _) => false,
                                    (Some(_), None) => true,
                                    (Some(f), Some(want)) => {
                                        (scalar_text(f) == scalar_text(want)) != *negate
                                    }
                                }
                            }));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    let q = s.chars().next()?;
    if (q == '\'' || q == '"') && s.len() >= 2 && s.ends_with(q) {
        Some(s[1..s.len() - 1].to_string())
    } else {
        None
    }
}

fn bracket(inner: &str, src: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    let filter = inner
        .strip_prefix("?(")
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported subscript [{inner}] in {src:?}"))?
        .trim();
    let (lhs, negate, rhs) = if let Some((l, r)) = filter.split_once("!=") {
        (l, true, Some(r))
    } else if let Some((l, r)) = filter.split_once("==") {
        (l, false, Some(r))
    } else {
        (filter, false, None)
    };
    let path: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")
        .ok_or_else(|| format!("filters must test @.field in {src:?}"))?
        .split('.')
        .map(str::to_string)
        .collect();
    let value = rhs.map(str::trim).map(|r| match unquote(r) {
        Some(s) => Value::String(s),
        None => serde_json::from_str(r).unwrap_or_else(|_| Value::String(r.to_string())),
    });
    Ok(Step::Filter {
        path,
        negate,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects() {
        let o = json!({"spec": {"instanceId": "i-1", "a.b": 2},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Running"}, {"type": "Stalled", "status": "False"}]},
            "items": [1, 2, 3]});
        let p = |s: &str| JsonPath::parse(s).expect("parses");
        assert_eq!(p(".spec.instanceId").find(&o), vec![&json!("i-1")]);
        assert_eq!(p("{.spec.instanceId}").find(&o), vec![&json!("i-1")]);
        assert_eq!(
            p(r#".status.conditions[?(@.type=="Ready")].reason"#).find(&o),
            vec![&json!("Running")]
        );
        assert_eq!(
            p(".status.conditions[?(@.type!='Ready')].status").find(&o),
            vec![&json!("False")]
        );
        assert_eq!(p(".status.conditions[*].type").find(&o).len(), 2);
        assert_eq!(p(".items[-1]").find(&o), vec![&json!(3)]);
        assert_eq!(p(".spec['a.b']").find(&o), vec![&json!(2)]);
        assert!(p(".spec.missing").find(&o).is_empty());
        assert!(JsonPath::parse("spec").is_err());
        assert!(JsonPath::parse(".a[").is_err());
        assert!(JsonPath::parse(".a[?(x)]").is_err());
    }
}
