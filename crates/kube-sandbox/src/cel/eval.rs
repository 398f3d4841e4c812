//! CEL evaluator over JSON values: `self` / `oldSelf` bound to the schema node's values, CEL's
//! error-absorbing `&&` / `||`, heterogeneous numeric equality and checked integer arithmetic.

// Operands are named as in the CEL specification (`a`, `b`, `x`, `y`, ...): longer names would
// not make the arithmetic and comparison rules easier to check against it.
#![allow(clippy::many_single_char_names)]

use std::cmp::Ordering;

use serde_json::Value;

use super::CelError;
use super::parser::{BinOp, Expr, Macro, UnOp};

type Res = Result<Value, CelError>;

struct Env<'a> {
    vars: Vec<(String, Value)>,
    self_value: &'a Value,
    old_self: Option<&'a Value>,
}

/// Evaluates `expr` with `self` and (for transition rules) `oldSelf`.
pub fn evaluate(expr: &Expr, self_value: &Value, old_self: Option<&Value>) -> Res {
    let mut env = Env {
        vars: Vec::new(),
        self_value,
        old_self,
    };
    eval(expr, &mut env)
}

fn rt(msg: impl Into<String>) -> CelError {
    CelError::Runtime(msg.into())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null_type",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(n) if n.is_u64() && !n.is_i64() => "uint",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn no_overload(op: &str, a: &Value, b: &Value) -> CelError {
    rt(format!(
        "no such overload: {}{op}{}",
        type_name(a),
        type_name(b)
    ))
}

fn eval(e: &Expr, env: &mut Env<'_>) -> Res {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Ident(n) => {
            if let Some((_, v)) = env.vars.iter().rev().find(|(k, _)| k == n) {
                return Ok(v.clone());
            }
            match n.as_str() {
                "self" => Ok(env.self_value.clone()),
                "oldSelf" => env
                    .old_self
                    .cloned()
                    .ok_or_else(|| rt("oldSelf is not available on create")),
                other => Err(rt(format!("undeclared reference to '{other}'"))),
            }
        }
        Expr::Select(target, field) => {
            let t = eval(target, env)?;
            match &t {
                Value::Object(m) => m
                    .get(field)
                    .cloned()
                    .ok_or_else(|| rt(format!("no such key: {field}"))),
                other => Err(rt(format!(
                    "type '{}' does not support field selection",
                    type_name(other)
                ))),
            }
        }
        Expr::Has(target, field) => match eval(target, env)? {
            Value::Object(m) => Ok(Value::Bool(m.contains_key(field))),
            other => Err(rt(format!(
                "invalid type for field selection: {}",
                type_name(&other)
            ))),
        },
        Expr::Index(target, idx) => {
            let t = eval(target, env)?;
            let i = eval(idx, env)?;
            index(&t, &i)
        }
        Expr::Unary(UnOp::Not, a) => match eval(a, env)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            other => Err(rt(format!("no such overload: !{}", type_name(&other)))),
        },
        Expr::Unary(UnOp::Neg, a) => match eval(a, env)? {
            Value::Number(n) if n.is_i64() => n
                .as_i64()
                .and_then(i64::checked_neg)
                .map(Value::from)
                .ok_or_else(|| rt("integer overflow")),
            Value::Number(n) => Ok(Value::from(-n.as_f64().unwrap_or(0.0))),
            other => Err(rt(format!("no such overload: -{}", type_name(&other)))),
        },
        Expr::Binary(BinOp::And, a, b) => logic(a, b, false, env),
        Expr::Binary(BinOp::Or, a, b) => logic(a, b, true, env),
        Expr::Binary(op, a, b) => {
            let x = eval(a, env)?;
            let y = eval(b, env)?;
            binary(*op, &x, &y)
        }
        Expr::Cond(c, a, b) => match eval(c, env)? {
            Value::Bool(true) => eval(a, env),
            Value::Bool(false) => eval(b, env),
            other => Err(rt(format!("condition is {}, not bool", type_name(&other)))),
        },
        Expr::List(items) => items
            .iter()
            .map(|i| eval(i, env))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Expr::Call { target, name, args } => {
            let recv = match target {
                Some(t) => Some(eval(t, env)?),
                None => None,
            };
            let args = args
                .iter()
                .map(|a| eval(a, env))
                .collect::<Result<Vec<_>, _>>()?;
            call(recv, name, &args)
        }
        Expr::Comprehension {
            kind,
            range,
            var,
            body,
        } => comprehension(*kind, range, var, body, env),
    }
}

/// `&&` (`short = false`) and `||` (`short = true`) with CEL's commutative error absorption.
fn logic(a: &Expr, b: &Expr, short: bool, env: &mut Env<'_>) -> Res {
    let x = eval(a, env);
    if matches!(x, Ok(Value::Bool(v)) if v == short) {
        return Ok(Value::Bool(short));
    }
    let y = eval(b, env);
    if matches!(y, Ok(Value::Bool(v)) if v == short) {
        return Ok(Value::Bool(short));
    }
    match (x?, y?) {
        (Value::Bool(_), Value::Bool(v)) => Ok(Value::Bool(v)),
        (p, q) => Err(no_overload(if short { "||" } else { "&&" }, &p, &q)),
    }
}

fn index(t: &Value, i: &Value) -> Res {
    match (t, i) {
        (Value::Array(items), Value::Number(n)) => {
            let idx = n
                .as_i64()
                .ok_or_else(|| rt("list index must be an integer"))?;
            usize::try_from(idx)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| rt(format!("index out of bounds: {idx}")))
        }
        (Value::Object(m), Value::String(k)) => m
            .get(k)
            .cloned()
            .ok_or_else(|| rt(format!("no such key: {k}"))),
        (a, b) => Err(no_overload("[]", a, b)),
    }
}

fn num_eq(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

/// CEL equality on JSON values (numbers compare across int, uint and double).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, CelError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
                return Ok(p.cmp(&q));
            }
            let (p, q) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            p.partial_cmp(&q).ok_or_else(|| rt("NaN comparison"))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => Err(no_overload("<", a, b)),
    }
}

fn arith(op: BinOp, a: &Value, b: &Value) -> Res {
    let sym = match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        _ => "%",
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) if op == BinOp::Add => {
            Ok(Value::String(format!("{x}{y}")))
        }
        (Value::Array(x), Value::Array(y)) if op == BinOp::Add => {
            Ok(Value::Array(x.iter().chain(y).cloned().collect()))
        }
        (Value::Number(x), Value::Number(y)) if x.is_i64() && y.is_i64() => {
            let (p, q) = (x.as_i64().unwrap_or(0), y.as_i64().unwrap_or(0));
            let r = match op {
                BinOp::Add => p.checked_add(q),
                BinOp::Sub => p.checked_sub(q),
                BinOp::Mul => p.checked_mul(q),
                BinOp::Div if q == 0 => return Err(rt("division by zero")),
                BinOp::Div => p.checked_div(q),
                _ if q == 0 => return Err(rt("modulus by zero")),
                _ => p.checked_rem(q),
            };
            r.map(Value::from).ok_or_else(|| rt("integer overflow"))
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() && op != BinOp::Rem => {
            let (p, q) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(Value::from(match op {
                BinOp::Add => p + q,
                BinOp::Sub => p - q,
                BinOp::Mul => p * q,
                _ => p / q,
            }))
        }
        _ => Err(no_overload(sym, a, b)),
    }
}

fn binary(op: BinOp, a: &Value, b: &Value) -> Res {
    match op {
        BinOp::Eq => Ok(Value::Bool(equal(a, b))),
        BinOp::Ne => Ok(Value::Bool(!equal(a, b))),
        BinOp::Lt => Ok(Value::Bool(compare(a, b)? == Ordering::Less)),
        BinOp::Le => Ok(Value::Bool(compare(a, b)? != Ordering::Greater)),
        BinOp::Gt => Ok(Value::Bool(compare(a, b)? == Ordering::Greater)),
        BinOp::Ge => Ok(Value::Bool(compare(a, b)? != Ordering::Less)),
        BinOp::In => match b {
            Value::Array(items) => Ok(Value::Bool(items.iter().any(|i| equal(i, a)))),
            Value::Object(m) => match a {
                Value::String(k) => Ok(Value::Bool(m.contains_key(k))),
                _ => Err(no_overload(" in ", a, b)),
            },
            _ => Err(no_overload(" in ", a, b)),
        },
        BinOp::And | BinOp::Or => Err(rt("logical operators are evaluated lazily")),
        _ => arith(op, a, b),
    }
}

fn size(v: &Value) -> Res {
    match v {
        Value::String(s) => Ok(Value::from(s.chars().count())),
        Value::Array(a) => Ok(Value::from(a.len())),
        Value::Object(m) => Ok(Value::from(m.len())),
        other => Err(rt(format!("no such overload: size({})", type_name(other)))),
    }
}

fn str_arg<'a>(args: &'a [Value], name: &str) -> Result<&'a str, CelError> {
    args.first()
        .and_then(Value::as_str)
        .ok_or_else(|| rt(format!("{name}() needs a string argument")))
}

fn call(recv: Option<Value>, name: &str, args: &[Value]) -> Res {
    match recv {
        None => {
            let a = args
                .first()
                .ok_or_else(|| rt(format!("{name}() needs an argument")))?;
            match name {
                "size" => size(a),
                "int" => match a {
                    Value::Number(n) if n.is_i64() => Ok(a.clone()),
                    Value::Number(n) => {
                        let f = n.as_f64().unwrap_or(f64::NAN);
                        if f.is_finite() && f.abs() < 9.2e18 {
                            // In range (checked above) and integral after `trunc`: exact.
                            #[allow(clippy::cast_possible_truncation)]
                            Ok(Value::from(f.trunc() as i64))
                        } else {
                            Err(rt("int() range error"))
                        }
                    }
                    Value::String(s) => s
                        .parse::<i64>()
                        .map(Value::from)
                        .map_err(|_| rt(format!("cannot convert {s:?} to int"))),
                    other => Err(rt(format!("no such overload: int({})", type_name(other)))),
                },
                "uint" => match a {
                    Value::Number(n) => n
                        .as_u64()
                        .map(Value::from)
                        .ok_or_else(|| rt("uint() range error")),
                    Value::String(s) => s
                        .parse::<u64>()
                        .map(Value::from)
                        .map_err(|_| rt(format!("cannot convert {s:?} to uint"))),
                    other => Err(rt(format!("no such overload: uint({})", type_name(other)))),
                },
                "double" => match a {
                    Value::Number(n) => Ok(Value::from(n.as_f64().unwrap_or(f64::NAN))),
                    Value::String(s) => s
                        .parse::<f64>()
                        .map(Value::from)
                        .map_err(|_| rt(format!("cannot convert {s:?} to double"))),
                    other => Err(rt(format!(
                        "no such overload: double({})",
                        type_name(other)
                    ))),
                },
                "string" => match a {
                    Value::String(_) => Ok(a.clone()),
                    Value::Number(_) | Value::Bool(_) => Ok(Value::String(a.to_string())),
                    other => Err(rt(format!(
                        "no such overload: string({})",
                        type_name(other)
                    ))),
                },
                other => Err(rt(format!("unknown function {other}"))),
            }
        }
        Some(r) => {
            if name == "size" {
                size(&r)
            } else {
                let Value::String(s) = &r else {
                    return Err(rt(format!("no such overload: {}.{name}()", type_name(&r))));
                };
                match name {
                    "startsWith" => Ok(Value::Bool(s.starts_with(str_arg(args, name)?))),
                    "endsWith" => Ok(Value::Bool(s.ends_with(str_arg(args, name)?))),
                    "contains" => Ok(Value::Bool(s.contains(str_arg(args, name)?))),
                    "matches" => {
                        let re = regex::Regex::new(str_arg(args, name)?)
                            .map_err(|e| rt(format!("invalid regex: {e}")))?;
                        Ok(Value::Bool(re.is_match(s)))
                    }
                    "lowerAscii" => Ok(Value::String(s.to_ascii_lowercase())),
                    "upperAscii" => Ok(Value::String(s.to_ascii_uppercase())),
                    other => Err(rt(format!("unknown function {other}"))),
                }
            }
        }
    }
}

fn comprehension(kind: Macro, range: &Expr, var: &str, body: &Expr, env: &mut Env<'_>) -> Res {
    let items: Vec<Value> = match eval(range, env)? {
        Value::Array(a) => a,
        Value::Object(m) => m.keys().cloned().map(Value::String).collect(),
        other => return Err(rt(format!("cannot iterate over {}", type_name(&other)))),
    };
    let mut out = Vec::new();
    let mut count = 0usize;
    let mut first_err = None;
    for item in items {
        env.vars.push((var.to_string(), item.clone()));
        let r = eval(body, env);
        env.vars.pop();
        match (kind, r) {
            (Macro::Map, r) => out.push(r?),
            (Macro::Filter, Ok(Value::Bool(true))) => out.push(item),
            (Macro::All, Ok(Value::Bool(false))) => return Ok(Value::Bool(false)),
            (Macro::Exists, Ok(Value::Bool(true))) => return Ok(Value::Bool(true)),
            (Macro::ExistsOne, Ok(Value::Bool(true))) => count += 1,
            (Macro::Filter, Ok(Value::Bool(false)))
            | (Macro::All | Macro::Exists | Macro::ExistsOne, Ok(Value::Bool(_))) => {}
            (Macro::ExistsOne | Macro::Filter, Err(e)) => return Err(e),
            (Macro::All | Macro::Exists, Err(e)) => {
                first_err.get_or_insert(e);
            }
            (_, Ok(other)) => {
                return Err(rt(format!(
                    "predicate returned {}, not bool",
                    type_name(&other)
                )));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(match kind {
        Macro::All => Value::Bool(true),
        Macro::Exists => Value::Bool(false),
        Macro::ExistsOne => Value::Bool(count == 1),
        Macro::Map | Macro::Filter => Value::Array(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_across_numbers() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert!(equal(&json!({"a": [1, 2]}), &json!({"a": [1.0, 2]})));
        assert!(!equal(&json!("1"), &json!(1)));
    }
}
