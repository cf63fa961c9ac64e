//! Metric math for the embedded CloudWatch's alarms: the expressions alarms use (arithmetic,
//! comparisons, `AND`/`OR`/`NOT`, `IF`), evaluated one period at a time.
//!
//! Semantics followed (CloudWatch UG "Using metric math",
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html>):
//! * a time series that has no data point in the period is *missing*; an operation between two
//!   series has a point where either has one, the missing side counting as 0; an operation between a
//!   series and a scalar has a point only where the series has one;
//! * a division by zero drops the point;
//! * `IF(condition, a, b)`: where the condition has no point there is none; a non-zero condition
//!   takes `a`, else `b`; comparisons and logical operators give 1 or 0.

use std::collections::HashMap;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    /// A query id (another `MetricDataQuery` of the alarm).
    Id(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
    And,
    Or,
}

/// One period's value: a scalar, or a series' point (`None` = no data point).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Scalar(f64),
    Series(Option<f64>),
}

impl Value {
    /// The alarm's data point: a series' point, or the scalar itself.
    pub fn point(self) -> Option<f64> {
        match self {
            Value::Scalar(x) => Some(x),
            Value::Series(p) => p,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Sym(&'static str),
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && cs.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.' || cs[i] == 'e' || cs[i] == 'E') {
                i += 1;
            }
            let s: String = cs[start..i].iter().collect();
            out.push(Tok::Num(s.parse().map_err(|_| format!("bad number `{s}`"))?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(cs[start..i].iter().collect()));
        } else {
            let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
            let sym = ["<=", ">=", "==", "!=", "&&", "||"].into_iter().find(|s| *s == two);
            if let Some(s) = sym {
                out.push(Tok::Sym(s));
                i += 2;
            } else {
                let s = ["+", "-", "*", "/", "(", ")", ",", "<", ">", "!"]
                    .into_iter()
                    .find(|s| s.starts_with(c))
                    .ok_or_else(|| format!("unexpected `{c}` in the expression"))?;
                out.push(Tok::Sym(s));
                i += 1;
            }
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    at: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.eat_word("OR") || self.eat_sym("||") {
            l = Expr::Binary(Op::Or, Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.not()?;
        while self.eat_word("AND") || self.eat_sym("&&") {
            l = Expr::Binary(Op::And, Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_word("NOT") || self.eat_sym("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let l = self.add()?;
        for (s, op) in [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt)] {
            if self.eat_sym(s) {
                return Ok(Expr::Binary(op, Box::new(l), Box::new(self.add()?)));
            }
        }
        Ok(l)
    }
    fn add(&mut self) -> Result<Expr, String> {
        let mut l = self.mul()?;
        loop {
            let op = if self.eat_sym("+") {
                Op::Add
            } else if self.eat_sym("-") {
                Op::Sub
            } else {
                return Ok(l);
            };
            l = Expr::Binary(op, Box::new(l), Box::new(self.mul()?));
        }
    }
    fn mul(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        loop {
            let op = if self.eat_sym("*") {
                Op::Mul
            } else if self.eat_sym("/") {
                Op::Div
            } else {
                return Ok(l);
            };
            l = Expr::Binary(op, Box::new(l), Box::new(self.unary()?));
        }
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Expr, String> {
        match self.toks.get(self.at).cloned() {
            Some(Tok::Num(x)) => {
                self.at += 1;
                Ok(Expr::Number(x))
            }
            Some(Tok::Sym("(")) => {
                self.at += 1;
                let e = self.or()?;
                if !self.eat_sym(")") {
                    return Err("missing `)`".into());
                }
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                self.at += 1;
                if name == "IF" {
                    if !self.eat_sym("(") {
                        return Err("IF needs `(`".into());
                    }
                    let c = self.or()?;
                    let mut args = Vec::new();
                    while self.eat_sym(",") {
                        args.push(self.or()?);
                    }
                    if !self.eat_sym(")") {
                        return Err("missing `)` after IF".into());
                    }
                    let mut args = args.into_iter();
                    let (Some(a), b) = (args.next(), args.next()) else {
                        return Err("IF takes a condition and one or two values".into());
                    };
                    if args.next().is_some() {
                        return Err("IF takes at most three arguments".into());
                    }
                    // IF(c, a) has no point where c is false (CloudWatch UG, IF expression).
                    let b = b.unwrap_or(Expr::Id(String::new()));
                    return Ok(Expr::If(Box::new(c), Box::new(a), Box::new(b)));
                }
                if matches!(self.peek(), Some(Tok::Sym("("))) {
                    return Err(format!("function {name} is not supported by the embedded CloudWatch"));
                }
                Ok(Expr::Id(name))
            }
            other => Err(format!("unexpected {other:?} in the expression")),
        }
    }
}

/// Parses an alarm's expression.
pub fn parse(text: &str) -> Result<Expr, String> {
    let mut p = P { toks: tokens(text)?, at: 0 };
    let e = p.or()?;
    if p.at != p.toks.len() {
        return Err(format!("unexpected {:?} in the expression", p.toks[p.at]));
    }
    Ok(e)
}

impl Expr {
    /// The ids it references.
    pub fn ids(&self, out: &mut Vec<String>) {
        match self {
            Expr::Number(_) => {}
            Expr::Id(id) => {
                if !id.is_empty() && !out.contains(id) {
                    out.push(id.clone())
                }
            }
            Expr::Neg(e) | Expr::Not(e) => e.ids(out),
            Expr::Binary(_, a, b) => {
                a.ids(out);
                b.ids(out);
            }
            Expr::If(c, a, b) => {
                c.ids(out);
                a.ids(out);
                b.ids(out);
            }
        }
    }

    /// The value for one period, the ids' points in `vars`.
    pub fn eval(&self, vars: &HashMap<String, Value>) -> Value {
        match self {
            Expr::Number(x) => Value::Scalar(*x),
            Expr::Id(id) if id.is_empty() => Value::Series(None),
            Expr::Id(id) => vars.get(id).copied().unwrap_or(Value::Series(None)),
            Expr::Neg(e) => map(e.eval(vars), |x| Some(-x)),
            Expr::Not(e) => map(e.eval(vars), |x| Some(bool_f(x == 0.0))),
            Expr::Binary(op, a, b) => binary(*op, a.eval(vars), b.eval(vars)),
            Expr::If(c, a, b) => match c.eval(vars) {
                Value::Series(None) => Value::Series(None),
                cond => {
                    let pick = if cond.point().is_some_and(|x| x != 0.0) { a.eval(vars) } else { b.eval(vars) };
                    match (cond, pick) {
                        // A scalar branch of a series condition is a point of the series.
                        (Value::Series(_), Value::Scalar(x)) => Value::Series(Some(x)),
                        (_, v) => v,
                    }
                }
            },
        }
    }
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn map(v: Value, f: impl Fn(f64) -> Option<f64>) -> Value {
    match v {
        Value::Scalar(x) => f(x).map_or(Value::Series(None), Value::Scalar),
        Value::Series(p) => Value::Series(p.and_then(f)),
    }
}

fn apply(op: Op, x: f64, y: f64) -> Option<f64> {
    Some(match op {
        Op::Add => x + y,
        Op::Sub => x - y,
        Op::Mul => x * y,
        Op::Div if y == 0.0 => return None,
        Op::Div => x / y,
        Op::Gt => bool_f(x > y),
        Op::Ge => bool_f(x >= y),
        Op::Lt => bool_f(x < y),
        Op::Le => bool_f(x <= y),
        Op::Eq => bool_f(x == y),
        Op::Ne => bool_f(x != y),
        Op::And => bool_f(x != 0.0 && y != 0.0),
        Op::Or => bool_f(x != 0.0 || y != 0.0),
    })
}

fn binary(op: Op, a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => apply(op, x, y).map_or(Value::Series(None), Value::Scalar),
        (Value::Series(p), Value::Scalar(y)) => Value::Series(p.and_then(|x| apply(op, x, y))),
        (Value::Scalar(x), Value::Series(p)) => Value::Series(p.and_then(|y| apply(op, x, y))),
        (Value::Series(None), Value::Series(None)) => Value::Series(None),
        (Value::Series(p), Value::Series(q)) => Value::Series(apply(op, p.unwrap_or(0.0), q.unwrap_or(0.0))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eval(text: &str, vars: &[(&str, Option<f64>)]) -> Option<f64> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), Value::Series(*v))).collect();
        parse(text).unwrap().eval(&vars).point()
    }

    #[test]
    fn arithmetic_and_missing_points() {
        let burn = "IF(total >= 70, (errors + timeouts) / total / 0.001, 0)";
        assert_eq!(eval(burn, &[("total", Some(100.0)), ("errors", Some(2.0)), ("timeouts", None)]), Some(20.0));
        assert_eq!(eval(burn, &[("total", Some(69.0)), ("errors", Some(69.0)), ("timeouts", Some(0.0))]), Some(0.0));
        assert_eq!(eval(burn, &[("total", None), ("errors", None), ("timeouts", None)]), None, "no traffic: no point");
        assert_eq!(eval("errors / total", &[("total", Some(0.0)), ("errors", Some(0.0))]), None, "x / 0 is dropped");
        assert_eq!(eval("errors + 1", &[("errors", None)]), None);
        assert_eq!(eval("1 + 2 * 3 - -1", &[]), Some(8.0));
        assert_eq!(eval("IF(a > 1 AND NOT b, 5, 6)", &[("a", Some(2.0)), ("b", Some(0.0))]), Some(5.0));
        assert_eq!(eval("IF(a > 1, 5)", &[("a", Some(0.0))]), None);
        assert_eq!(eval("(100 - good) / 100 / 0.01", &[("good", Some(95.0))]), Some((100.0 - 95.0) / 100.0 / 0.01));
        for bad in ["a +", "IF(a)", "SUM(a)", "a $ b", "(a"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
