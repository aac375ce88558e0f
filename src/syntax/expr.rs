//! Expressions from pest pairs: operators ordered by an iterative precedence parser,
//! primaries, call arguments and list items, and the depth limit that keeps hostile
//! input from overflowing the stack.

use super::ast::*;
use super::errors::SyntaxError;
use super::parser::{span_of, Builder, Rule};
use pest::iterators::Pair;

/// How deep an expression's tree may be: each operator, call and list is a level. The
/// checker and the evaluator walk expressions recursively, so a long chain such as
/// `a and a and ...` must be refused rather than overflow the stack.
pub(super) const MAX_EXPR_DEPTH: usize = 256;

// Binding powers, as pest's Pratt parser numbers them: a prefix operator takes as its
// operand everything that binds tighter than itself, so `not a == b` is `not (a == b)`.
const PREC_NOT: u8 = 30;
const PREC_NEG: u8 = 80;

/// An infix operator and how tightly it binds; all are left-associative.
fn infix(rule: Rule) -> Option<(BinaryOp, u8)> {
    Some(match rule {
        Rule::or_op => (BinaryOp::Or, 10),
        Rule::and_op => (BinaryOp::And, 20),
        Rule::eq => (BinaryOp::Eq, 40),
        Rule::ne => (BinaryOp::Ne, 40),
        Rule::lt => (BinaryOp::Lt, 40),
        Rule::le => (BinaryOp::Le, 40),
        Rule::gt => (BinaryOp::Gt, 40),
        Rule::ge => (BinaryOp::Ge, 40),
        Rule::coalesce => (BinaryOp::Coalesce, 50),
        Rule::add => (BinaryOp::Add, 60),
        Rule::sub => (BinaryOp::Sub, 60),
        Rule::mul => (BinaryOp::Mul, 70),
        Rule::div => (BinaryOp::Div, 70),
        _ => return None,
    })
}

/// An operator still waiting for its right-hand operand while an expression is built.
enum Pending {
    Prefix {
        op: UnaryOp,
        start: usize,
        /// The binding power in force before the operator.
        rbp: u8,
    },
    Infix {
        op: BinaryOp,
        lhs: (Expr, usize),
        rbp: u8,
    },
}

impl Builder {
    pub(super) fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        self.sized_expr(pair).0
    }

    /// Reports an expression deeper than [`MAX_EXPR_DEPTH`]; what comes back only stands
    /// in for it, since the file is refused.
    fn too_deep(&mut self, span: Span) -> (Expr, usize) {
        self.too_deep = true;
        let mut e = SyntaxError::new(
            span,
            format!("this expression is nested deeper than {MAX_EXPR_DEPTH} levels"),
            "too deep",
        );
        e.help = Some(format!(
            "each operator, call and list adds a level, so a chain like `a and b and c` \
             counts one per `and`; an expression may be at most {MAX_EXPR_DEPTH} levels deep"
        ));
        self.errors.push(e);
        (
            Expr {
                kind: ExprKind::Null,
                span,
            },
            1,
        )
    }

    /// An expression and the depth of its tree (a literal or name is 1 deep).
    ///
    /// Operators are ordered by precedence climbing as pest's Pratt parser does it, but
    /// with an explicit stack instead of recursion: `not not not ... x` must not
    /// overflow the stack. A tree deeper than [`MAX_EXPR_DEPTH`] is never built; the
    /// expression is reported and the file refused.
    fn sized_expr(&mut self, pair: Pair<Rule>) -> (Expr, usize) {
        // The pair's own span may run on over the blanks after the last operand.
        let whole = pair.clone();
        let mut pairs = pair.into_inner().peekable();
        let mut stack: Vec<Pending> = Vec::new();
        let mut rbp = 0;
        loop {
            // An operand: any prefix operators, then a primary.
            let mut operand = loop {
                let next = pairs.next().expect("grammar: an operand");
                match next.as_rule() {
                    Rule::neg | Rule::not_op => {
                        let (op, prec) = if next.as_rule() == Rule::neg {
                            (UnaryOp::Neg, PREC_NEG)
                        } else {
                            (UnaryOp::Not, PREC_NOT)
                        };
                        stack.push(Pending::Prefix {
                            op,
                            start: span_of(&next).start,
                            rbp,
                        });
                        rbp = prec - 1;
                    }
                    _ => break self.primary(next),
                }
            };
            // Fold finished operators into the operand until one binds the next operator.
            loop {
                let next = pairs.peek().and_then(|p| infix(p.as_rule()));
                if let Some((op, prec)) = next.filter(|&(_, prec)| rbp < prec) {
                    pairs.next();
                    stack.push(Pending::Infix {
                        op,
                        lhs: operand,
                        rbp,
                    });
                    rbp = prec;
                    break;
                }
                let Some(pending) = stack.pop() else {
                    return operand;
                };
                let (expr, depth) = operand;
                let (node, outer) = match pending {
                    Pending::Prefix { op, start, rbp } => {
                        let span = Span::new(start, expr.span.end);
                        let kind = ExprKind::Unary(op, Box::new(expr));
                        ((Expr { kind, span }, depth + 1), rbp)
                    }
                    Pending::Infix {
                        op,
                        lhs: (lhs, lhs_depth),
                        rbp,
                    } => {
                        let span = lhs.span.to(expr.span);
                        let kind = ExprKind::Binary(op, Box::new(lhs), Box::new(expr));
                        ((Expr { kind, span }, depth.max(lhs_depth) + 1), rbp)
                    }
                };
                if node.1 > MAX_EXPR_DEPTH {
                    let start = whole.as_span().start();
                    let end = whole.into_inner().last().map_or(start, |p| span_of(&p).end);
                    return self.too_deep(Span::new(start, end));
                }
                operand = node;
                rbp = outer;
            }
        }
    }

    fn primary(&mut self, pair: Pair<Rule>) -> (Expr, usize) {
        let span = span_of(&pair);
        let text = pair.as_str();
        let (kind, depth) = match pair.as_rule() {
            Rule::paren => {
                let (inner, depth) =
                    self.sized_expr(pair.into_inner().next().expect("grammar: paren"));
                return (
                    Expr {
                        kind: inner.kind,
                        span,
                    },
                    depth,
                );
            }
            Rule::list => {
                let (items, depth) = self.args(pair.into_inner());
                (ExprKind::List(items), depth)
            }
            // Its nesting is bounded with every brace before parsing (64 deep).
            Rule::object => {
                let block = self.block(pair);
                (ExprKind::Object(block), 1)
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().expect("grammar: call name"));
                let (args, depth) = self.args(inner);
                (ExprKind::Call { name, args }, depth)
            }
            Rule::duration => (ExprKind::Duration(text.to_string()), 1),
            Rule::rate => (ExprKind::Rate(text.to_string()), 1),
            Rule::number => (ExprKind::Number(text.to_string()), 1),
            Rule::string => (ExprKind::Str(self.string(pair)), 1),
            Rule::boolean => (ExprKind::Bool(text == "true"), 1),
            Rule::null => (ExprKind::Null, 1),
            Rule::jsonpath => (ExprKind::Path(text.to_string()), 1),
            _ => (
                ExprKind::Name(pair.into_inner().map(|i| self.ident(i)).collect()),
                1,
            ),
        };
        if depth > MAX_EXPR_DEPTH {
            return self.too_deep(span);
        }
        (Expr { kind, span }, depth)
    }

    /// The arguments of a call or the items of a list, and the depth of the node that
    /// holds them.
    fn args<'i>(&mut self, pairs: impl Iterator<Item = Pair<'i, Rule>>) -> (Vec<Arg>, usize) {
        let mut depth = 0;
        let args = pairs
            .map(|pair| {
                let mut inner: Vec<Pair<Rule>> = pair.into_inner().collect();
                let (value, d) = self.sized_expr(inner.pop().expect("grammar: argument value"));
                depth = depth.max(d);
                let name = inner.pop().map(|n| self.ident(n));
                Arg { name, value }
            })
            .collect();
        (args, depth + 1)
    }
}
