//! The typed syntax tree of a `.hmr` file: every name, literal, path and expression
//! carries the byte span it came from, so later stages can point at it.

/// A half-open byte range into the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Service(Service),
    Model(Model),
    Source(Source),
    Sink(Sink),
    Flow(Flow),
    Aggregate(Aggregate),
    Tenants(Tenants),
    /// `server { listen = "..." metrics = true }`: hamstr's own HTTP listener.
    Server(Server),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: Ident,
    /// `service S for shops`: the tenants it is instantiated for (spec §13).
    pub tenants: Option<Ident>,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub fields: Vec<ModelField>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelField {
    pub name: Ident,
    pub ty: TypeRef,
}

/// `string`, `decimal?`: a type name and whether null is allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeRef {
    pub name: Ident,
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: Ident,
    pub service: Ident,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `tenants NAME = csv("file")`: one account per row of a file (spec §13).
#[derive(Debug, Clone, PartialEq)]
pub struct Tenants {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub inputs: Vec<Ident>,
    pub outputs: Vec<Ident>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub name: Ident,
    pub body: Block,
    pub span: Span,
}

/// `server { ... }`: the listener's address and whether it serves `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The `server` keyword: where a problem with the block as a whole is reported.
    pub keyword: Span,
    pub body: Block,
    pub span: Span,
}

/// `{ name = value ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub name: PropName,
    pub value: StmtValue,
    pub span: Span,
}

/// A property name: a bare identifier or a quoted string (`"X-Client" = ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct PropName {
    pub text: String,
    pub quoted: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtValue {
    /// `name = expr`
    Expr(Expr),
    /// `name : type = expr`
    Typed(TypeRef, Expr),
    /// `name { ... }`
    Block(Block),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Str(String),
    /// The literal's text, `42` or `2.5`; the checker decides what it fits.
    Number(String),
    /// The literal's text, `1h30m`; validated by the checker.
    Duration(String),
    /// The literal's text, `20/s`; validated by the checker.
    Rate(String),
    Bool(bool),
    Null,
    /// A bare JSONPath, as written.
    Path(String),
    /// `[a, b]`; items may be named (`[day = day(created_at)]`) where a property allows it.
    List(Vec<Arg>),
    /// `{ name = value ... }`: a JSON object written as a value (in a `body`).
    Object(Block),
    Call {
        name: Ident,
        args: Vec<Arg>,
    },
    /// A name or dotted name: `id`, `newest_first`, `parent.id`.
    Name(Vec<Ident>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Coalesce,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Coalesce => "??",
        }
    }
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

impl Block {
    /// The first statement with this name.
    pub fn get(&self, name: &str) -> Option<&Stmt> {
        self.stmts.iter().find(|s| s.name.text == name)
    }
}

/// Span-blind comparison, the way kdl-rs and dhall-rust compare trees: every span set
/// to zero, so two texts that differ only in layout give equal trees.
impl File {
    pub fn without_spans(&self) -> File {
        let mut f = self.clone();
        for item in &mut f.items {
            match item {
                Item::Service(s) => {
                    s.span = Span::default();
                    erase_ident(&mut s.name);
                    s.tenants.iter_mut().for_each(erase_ident);
                    erase_block(&mut s.body);
                }
                Item::Tenants(t) => {
                    t.span = Span::default();
                    erase_ident(&mut t.name);
                    erase_expr(&mut t.value);
                }
                Item::Model(m) => {
                    m.span = Span::default();
                    erase_ident(&mut m.name);
                    for field in &mut m.fields {
                        erase_ident(&mut field.name);
                        erase_type(&mut field.ty);
                    }
                }
                Item::Source(s) => {
                    s.span = Span::default();
                    erase_ident(&mut s.name);
                    erase_ident(&mut s.service);
                    erase_block(&mut s.body);
                }
                Item::Sink(s) => {
                    s.span = Span::default();
                    erase_ident(&mut s.name);
                    erase_expr(&mut s.value);
                }
                Item::Flow(fl) => {
                    fl.span = Span::default();
                    fl.inputs.iter_mut().for_each(erase_ident);
                    fl.outputs.iter_mut().for_each(erase_ident);
                }
                Item::Aggregate(a) => {
                    a.span = Span::default();
                    erase_ident(&mut a.name);
                    erase_block(&mut a.body);
                }
                Item::Server(s) => {
                    s.span = Span::default();
                    s.keyword = Span::default();
                    erase_block(&mut s.body);
                }
            }
        }
        f
    }
}

fn erase_ident(i: &mut Ident) {
    i.span = Span::default();
}

fn erase_type(t: &mut TypeRef) {
    t.span = Span::default();
    erase_ident(&mut t.name);
}

fn erase_block(b: &mut Block) {
    b.span = Span::default();
    for s in &mut b.stmts {
        s.span = Span::default();
        s.name.span = Span::default();
        match &mut s.value {
            StmtValue::Expr(e) => erase_expr(e),
            StmtValue::Typed(t, e) => {
                erase_type(t);
                erase_expr(e);
            }
            StmtValue::Block(inner) => erase_block(inner),
        }
    }
}

fn erase_expr(e: &mut Expr) {
    e.span = Span::default();
    match &mut e.kind {
        ExprKind::List(args) => args.iter_mut().for_each(erase_arg),
        ExprKind::Object(b) => erase_block(b),
        ExprKind::Call { name, args } => {
            erase_ident(name);
            args.iter_mut().for_each(erase_arg);
        }
        ExprKind::Name(parts) => parts.iter_mut().for_each(erase_ident),
        ExprKind::Unary(_, x) => erase_expr(x),
        ExprKind::Binary(_, l, r) => {
            erase_expr(l);
            erase_expr(r);
        }
        _ => {}
    }
}

fn erase_arg(a: &mut Arg) {
    if let Some(n) = &mut a.name {
        erase_ident(n);
    }
    erase_expr(&mut a.value);
}
