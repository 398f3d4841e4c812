//! A small CEL (Common Expression Language) subset for the `x-kubernetes-validations` rules of
//! custom resource schemas: literals, `self` / `oldSelf`, field selection and indexing, `has()`,
//! `size()`, comparison, arithmetic, `&&` / `||` / `!`, `?:`, `in`, string functions
//! (`startsWith`, `endsWith`, `contains`, `matches`, `lowerAscii`, `upperAscii`), conversions
//! (`int`, `uint`, `double`, `string`) and the `all` / `exists` / `exists_one` / `map` / `filter`
//! macros. A rule using anything else fails to compile with [`CelError::Unsupported`]; the
//! schema layer then skips it with a warning instead of rejecting objects it cannot judge.

mod eval;
mod lexer;
mod parser;

use serde_json::Value;

/// Why a rule could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CelError {
    /// The rule is not valid CEL (as far as this subset can tell).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The rule uses CEL this subset does not implement.
    #[error("unsupported CEL: {0}")]
    Unsupported(String),
    /// Evaluation failed (`no such key`, type mismatch, overflow): the rule does not hold.
    #[error("{0}")]
    Runtime(String),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Program {
    expr: parser::Expr,
    uses_old_self: bool,
}

impl Program {
    /// Parses `source`; fails on syntax errors and on CEL outside the supported subset.
    ///
    /// # Errors
    ///
    /// [`CelError::Syntax`] when `source` is not valid CEL, [`CelError::Unsupported`] when it
    /// uses CEL this subset does not implement.
    pub fn compile(source: &str) -> Result<Self, CelError> {
        let tokens = lexer::tokenize(source)?;
        let expr = parser::parse(&tokens)?;
        parser::check_supported(&expr)?;
        let uses_old_self = expr.mentions("oldSelf");
        Ok(Self {
            expr,
            uses_old_self,
        })
    }

    /// True for transition rules (they mention `oldSelf` and run only on updates).
    pub fn is_transition_rule(&self) -> bool {
        self.uses_old_self
    }

    /// Evaluates the rule to a boolean with `self` (and `oldSelf`) bound.
    ///
    /// # Errors
    ///
    /// [`CelError::Runtime`] when evaluation fails or the rule yields something other than a
    /// boolean.
    pub fn evaluate(&self, self_value: &Value, old_self: Option<&Value>) -> Result<bool, CelError> {
        match eval::evaluate(&self.expr, self_value, old_self)? {
            Value::Bool(b) => Ok(b),
            other => Err(CelError::Runtime(format!(
                "rule evaluated to {other}, not a bool"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Owned values, so that each case below reads as one `json!` literal.
    #[allow(clippy::needless_pass_by_value)]
    fn eval(rule: &str, s: Value, old: Option<Value>) -> Result<bool, CelError> {
        Program::compile(rule)?.evaluate(&s, old.as_ref())
    }

    #[test]
    fn transition_rule() {
        let p = Program::compile("self == oldSelf").expect("compiles");
        assert!(p.is_transition_rule());
        assert_eq!(p.evaluate(&json!("i-1"), Some(&json!("i-1"))), Ok(true));
        assert_eq!(p.evaluate(&json!("i-1"), Some(&json!("i-2"))), Ok(false));
        assert!(
            !Program::compile("size(self) <= 3")
                .expect("compiles")
                .is_transition_rule()
        );
    }

    #[test]
    fn common_rules() {
        assert_eq!(
            eval("has(self.a) && self.a > 1", json!({"a": 2}), None),
            Ok(true)
        );
        assert_eq!(eval("has(self.a)", json!({}), None), Ok(false));
        assert_eq!(
            eval(
                "!has(self.a) || self.a.startsWith('i-')",
                json!({"a": "x"}),
                None
            ),
            Ok(false)
        );
        assert_eq!(eval("size(self) <= 2", json!([1, 2, 3]), None), Ok(false));
        assert_eq!(eval("self.size() == 3", json!("abc"), None), Ok(true));
        assert_eq!(
            eval(
                "self.x != 'b' || self.y == 1",
                json!({"x": "b", "y": 1}),
                None
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                "self.minReplicas <= self.replicas",
                json!({"minReplicas": 1, "replicas": 3}),
                None
            ),
            Ok(true)
        );
        assert_eq!(eval("self.all(x, x > 0)", json!([1, 2]), None), Ok(true));
        assert_eq!(
            eval("self.exists(x, x == 'a')", json!(["b"]), None),
            Ok(false)
        );
        assert_eq!(eval("'a' in self", json!(["a"]), None), Ok(true));
        assert_eq!(
            eval("self.matches('^i-[0-9a-z]+$')", json!("i-abc"), None),
            Ok(true)
        );
        assert_eq!(
            eval(
                "self.a ? self.b == 1 : true",
                json!({"a": true, "b": 2}),
                None
            ),
            Ok(false)
        );
        assert_eq!(
            eval(
                "1 + 2 * 3 == 7 && 7 / 2 == 3 && 7 % 2 == 1",
                json!(null),
                None
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                "self.map(x, x * 2).filter(y, y > 2) == [4]",
                json!([1, 2]),
                None
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                "int('5') == 5 && string(5) == '5' && double(1) == 1.0",
                json!(null),
                None
            ),
            Ok(true)
        );
        assert_eq!(
            eval("self['a-b'] == true", json!({"a-b": true}), None),
            Ok(true)
        );
        assert_eq!(
            eval("self.exists_one(x, x == 1)", json!([1, 1]), None),
            Ok(false)
        );
    }

    #[test]
    fn errors() {
        assert!(
            matches!(eval("self.missing == 1", json!({}), None), Err(CelError::Runtime(m)) if m.contains("no such key"))
        );
        // Error absorption like CEL: false && error == false; true || error == true.
        assert_eq!(
            eval("false && self.missing == 1", json!({}), None),
            Ok(false)
        );
        assert_eq!(eval("self.missing == 1 || true", json!({}), None), Ok(true));
        assert!(matches!(
            Program::compile("self.quantity().isLessThan(x)"),
            Err(CelError::Unsupported(_))
        ));
        assert!(matches!(
            Program::compile("self =="),
            Err(CelError::Syntax(_))
        ));
        assert!(matches!(
            Program::compile("self.x == 'unterminated"),
            Err(CelError::Syntax(_))
        ));
        assert!(matches!(
            eval("self + 1 > 0", json!(i64::MAX), None),
            Err(CelError::Runtime(_))
        ));
    }
}
