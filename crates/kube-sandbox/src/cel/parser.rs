//! CEL parser (recursive descent, CEL operator precedence) producing an [`Expr`] tree, and the
//! check that a tree stays inside the supported subset.

use serde_json::Value;

use super::CelError;
use super::lexer::Token;

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnOp {
    Not,
    Neg,
}

/// Binary operators (`&&` and `||` included; they short-circuit in the evaluator).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Comprehension macros.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Macro {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Ident(String),
    Select(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Has(Box<Expr>, String),
    Call {
        target: Option<Box<Expr>>,
        name: String,
        args: Vec<Expr>,
    },
    Comprehension {
        kind: Macro,
        range: Box<Expr>,
        var: String,
        body: Box<Expr>,
    },
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
}

impl Expr {
    /// Whether identifier `name` occurs free in the tree.
    pub fn mentions(&self, name: &str) -> bool {
        match self {
            Self::Lit(_) => false,
            Self::Ident(n) => n == name,
            Self::Select(e, _) | Self::Has(e, _) | Self::Unary(_, e) => e.mentions(name),
            Self::Index(a, b) | Self::Binary(_, a, b) => a.mentions(name) || b.mentions(name),
            Self::Call { target, args, .. } => {
                target.as_ref().is_some_and(|t| t.mentions(name))
                    || args.iter().any(|a| a.mentions(name))
            }
            Self::Comprehension {
                range, var, body, ..
            } => range.mentions(name) || (var != name && body.mentions(name)),
            Self::Cond(a, b, c) => a.mentions(name) || b.mentions(name) || c.mentions(name),
            Self::List(items) => items.iter().any(|a| a.mentions(name)),
        }
    }
}

/// Parses a token list into one expression.
pub fn parse(tokens: &[Token]) -> Result<Expr, CelError> {
    if tokens.len() > MAX_TOKENS {
        return Err(CelError::Unsupported(format!(
            "rules longer than {MAX_TOKENS} tokens"
        )));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(CelError::Syntax(format!("unexpected token {t:?}"))),
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
}

/// Longest rule, in tokens (keeps every recursive walk of the tree shallow).
const MAX_TOKENS: usize = 512;
/// Deepest nesting of unary operators, parentheses, calls and lists.
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Token::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), CelError> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(CelError::Syntax(format!(
                "expected '{op}', found {:?}",
                self.peek()
            )))
        }
    }

    fn expr(&mut self) -> Result<Expr, CelError> {
        let cond = self.or()?;
        if self.eat("?") {
            let a = self.or()?;
            self.expect(":")?;
            let b = self.expr()?;
            return Ok(Expr::Cond(Box::new(cond), Box::new(a), Box::new(b)));
        }
        Ok(cond)
    }

    fn or(&mut self) -> Result<Expr, CelError> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Binary(BinOp::Or, Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, CelError> {
        let mut e = self.relation()?;
        while self.eat("&&") {
            e = Expr::Binary(BinOp::And, Box::new(e), Box::new(self.relation()?));
        }
        Ok(e)
    }

    fn relation(&mut self) -> Result<Expr, CelError> {
        let mut e = self.addition()?;
        loop {
            let op = match self.peek() {
                Some(Token::Op("==")) => BinOp::Eq,
                Some(Token::Op("!=")) => BinOp::Ne,
                Some(Token::Op("<")) => BinOp::Lt,
                Some(Token::Op("<=")) => BinOp::Le,
                Some(Token::Op(">")) => BinOp::Gt,
                Some(Token::Op(">=")) => BinOp::Ge,
                Some(Token::In) => BinOp::In,
                _ => return Ok(e),
            };
            self.pos += 1;
            e = Expr::Binary(op, Box::new(e), Box::new(self.addition()?));
        }
    }

    fn addition(&mut self) -> Result<Expr, CelError> {
        let mut e = self.multiplication()?;
        loop {
            let op = if self.eat("+") {
                BinOp::Add
            } else if self.eat("-") {
                BinOp::Sub
            } else {
                return Ok(e);
            };
            e = Expr::Binary(op, Box::new(e), Box::new(self.multiplication()?));
        }
    }

    fn multiplication(&mut self) -> Result<Expr, CelError> {
        let mut e = self.unary()?;
        loop {
            let op = if self.eat("*") {
                BinOp::Mul
            } else if self.eat("/") {
                BinOp::Div
            } else if self.eat("%") {
                BinOp::Rem
            } else {
                return Ok(e);
            };
            e = Expr::Binary(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, CelError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CelError::Unsupported(format!(
                "expressions nested deeper than {MAX_DEPTH}"
            )));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Expr, CelError> {
        if self.eat("!") {
            return Ok(Expr::Unary(UnOp::Not, Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(match self.unary()? {
                Expr::Lit(Value::Number(n)) if n.is_i64() || n.is_f64() => {
                    match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => Expr::Lit(Value::from(-i)),
                        (None, Some(f)) => Expr::Lit(Value::from(-f)),
                        _ => Expr::Lit(Value::Number(n)),
                    }
                }
                other => Expr::Unary(UnOp::Neg, Box::new(other)),
            });
        }
        self.member()
    }

    fn args(&mut self) -> Result<Vec<Expr>, CelError> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn member(&mut self) -> Result<Expr, CelError> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Token::Ident(field)) = self.next() else {
                    return Err(CelError::Syntax("expected a field name after '.'".into()));
                };
                if self.eat("(") {
                    let args = self.args()?;
                    e = method(e, field, args)?;
                } else {
                    e = Expr::Select(Box::new(e), field);
                }
            } else if self.eat("[") {
                let idx = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, CelError> {
        match self.next() {
            Some(Token::Int(i)) => Ok(Expr::Lit(Value::from(i))),
            Some(Token::UInt(u)) => Ok(Expr::Lit(Value::from(u))),
            Some(Token::Double(d)) => Ok(Expr::Lit(Value::from(d))),
            Some(Token::Str(s)) => Ok(Expr::Lit(Value::String(s))),
            Some(Token::True) => Ok(Expr::Lit(Value::Bool(true))),
            Some(Token::False) => Ok(Expr::Lit(Value::Bool(false))),
            Some(Token::Null) => Ok(Expr::Lit(Value::Null)),
            Some(Token::Ident(name)) => {
                if self.eat("(") {
                    let args = self.args()?;
                    if name == "has" {
                        return match args.as_slice() {
                            [Expr::Select(operand, field)] => {
                                Ok(Expr::Has(operand.clone(), field.clone()))
                            }
                            _ => Err(CelError::Syntax(
                                "has() takes one field selection, like has(self.x)".into(),
                            )),
                        };
                    }
                    Ok(Expr::Call {
                        target: None,
                        name,
                        args,
                    })
                } else {
                    Ok(Expr::Ident(name))
                }
            }
            Some(Token::Op("(")) => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Token::Op("[")) => {
                let mut items = Vec::new();
                if self.eat("]") {
                    return Ok(Expr::List(items));
                }
                loop {
                    items.push(self.expr()?);
                    if self.eat("]") {
                        return Ok(Expr::List(items));
                    }
                    self.expect(",")?;
                    if self.eat("]") {
                        return Ok(Expr::List(items));
                    }
                }
            }
            other => Err(CelError::Syntax(format!("unexpected {other:?}"))),
        }
    }
}

fn method(target: Expr, name: String, args: Vec<Expr>) -> Result<Expr, CelError> {
    let kind = match name.as_str() {
        "all" => Some(Macro::All),
        "exists" => Some(Macro::Exists),
        "exists_one" => Some(Macro::ExistsOne),
        "map" => Some(Macro::Map),
        "filter" => Some(Macro::Filter),
        _ => None,
    };
    match (kind, args.as_slice()) {
        (Some(kind), [Expr::Ident(var), body]) => Ok(Expr::Comprehension {
            kind,
            range: Box::new(target),
            var: var.clone(),
            body: Box::new(body.clone()),
        }),
        (Some(_), _) => Err(CelError::Unsupported(format!(
            "{name}() with other than (variable, expression)"
        ))),
        (None, _) => Ok(Expr::Call {
            target: Some(Box::new(target)),
            name,
            args,
        }),
    }
}

const GLOBAL_FUNCTIONS: [(&str, usize); 5] = [
    ("size", 1),
    ("int", 1),
    ("uint", 1),
    ("double", 1),
    ("string", 1),
];
const METHODS: [(&str, usize); 7] = [
    ("size", 0),
    ("startsWith", 1),
    ("endsWith", 1),
    ("contains", 1),
    ("matches", 1),
    ("lowerAscii", 0),
    ("upperAscii", 0),
];

/// Rejects functions and free identifiers the evaluator does not implement.
pub fn check_supported(e: &Expr) -> Result<(), CelError> {
    check(e, &mut vec!["self".to_string(), "oldSelf".to_string()])
}

fn check(e: &Expr, bound: &mut Vec<String>) -> Result<(), CelError> {
    match e {
        Expr::Lit(_) => Ok(()),
        Expr::Ident(n) if bound.contains(n) => Ok(()),
        Expr::Ident(n) => Err(CelError::Unsupported(format!("identifier {n}"))),
        Expr::Select(e, _) | Expr::Has(e, _) | Expr::Unary(_, e) => check(e, bound),
        Expr::Index(a, b) | Expr::Binary(_, a, b) => check(a, bound).and_then(|()| check(b, bound)),
        Expr::Cond(a, b, c) => check(a, bound)
            .and_then(|()| check(b, bound))
            .and_then(|()| check(c, bound)),
        Expr::List(items) => items.iter().try_for_each(|i| check(i, bound)),
        Expr::Comprehension {
            range, var, body, ..
        } => {
            check(range, bound)?;
            bound.push(var.clone());
            let r = check(body, bound);
            bound.pop();
            r
        }
        Expr::Call { target, name, args } => {
            let table: &[(&str, usize)] = if target.is_some() {
                &METHODS
            } else {
                &GLOBAL_FUNCTIONS
            };
            if !table
                .iter()
                .any(|(n, arity)| n == name && *arity == args.len())
            {
                return Err(CelError::Unsupported(format!(
                    "function {name}/{}",
                    args.len()
                )));
            }
            if let Some(t) = target {
                check(t, bound)?;
            }
            args.iter().try_for_each(|a| check(a, bound))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn p(s: &str) -> Expr {
        parse(&tokenize(s).expect("tokens")).expect("parses")
    }

    #[test]
    fn precedence() {
        match p("a || b && c == 1 + 2 * 3") {
            Expr::Binary(BinOp::Or, _, rhs) => match *rhs {
                Expr::Binary(BinOp::And, _, rel) => {
                    assert!(matches!(*rel, Expr::Binary(BinOp::Eq, _, _)));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(p("-1"), Expr::Lit(Value::from(-1)));
        assert!(matches!(p("has(self.x)"), Expr::Has(_, f) if f == "x"));
        assert!(matches!(
            p("self.all(x, x > 1)"),
            Expr::Comprehension {
                kind: Macro::All,
                ..
            }
        ));
    }

    #[test]
    fn limits() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            parse(&tokenize(&deep).expect("tokens")),
            Err(CelError::Unsupported(_))
        ));
        let long = vec!["1"; 2_000].join(" + ");
        assert!(matches!(
            parse(&tokenize(&long).expect("tokens")),
            Err(CelError::Unsupported(_))
        ));
        assert!(parse(&tokenize(&"!".repeat(30)).expect("tokens")).is_err());
    }

    #[test]
    fn subset_check() {
        assert!(check_supported(&p("size(self.a) < 3 && self.b.startsWith('x')")).is_ok());
        assert!(check_supported(&p("self.all(x, x.size() > 0)")).is_ok());
        assert!(check_supported(&p("x > 1")).is_err());
        assert!(check_supported(&p("self.isSorted()")).is_err());
        assert!(check_supported(&p("quantity(self)")).is_err());
    }
}
