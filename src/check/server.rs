//! `server { listen = "host:port"  metrics = true }`: hamstr's own HTTP listener (spec
//! §11, §15). One block at most; `listen` is an IP address and port.

use super::{Code, Ctx, Server};
use crate::syntax::ast::{self, ExprKind};

pub(crate) const PROPS: &[&str] = &["listen", "metrics"];

impl<'e> Ctx<'e> {
    /// The first `server` block of the file; a second one is reported on its keyword.
    pub(super) fn server(&mut self, file: &ast::File) -> Option<Server> {
        let mut blocks = file.items.iter().filter_map(|i| match i {
            ast::Item::Server(s) => Some(s),
            _ => None,
        });
        let first = blocks.next()?;
        for again in blocks {
            self.error(
                Code::DuplicateName,
                "`server` is declared twice",
                again.keyword,
                "declared again here",
            )
            .labels
            .push(super::Label {
                span: first.keyword,
                text: "first declared here".into(),
            });
        }
        let props = self.props(&first.body, PROPS, "`server`");
        let listen = match props.get("listen").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => match self.text(e, false, "`listen`") {
                None => None,
                Some(_) if self.already_reported(e.span) => Some(None),
                Some(text) if text.value.parse::<std::net::SocketAddr>().is_err() => {
                    self.error(
                        Code::InvalidValue,
                        format!(
                            "`listen` must be an IP address and port, not \"{}\"",
                            text.value.escape_debug()
                        ),
                        e.span,
                        "expected an address like \"127.0.0.1:8787\"",
                    )
                    .help = Some(
                        "\"127.0.0.1:8787\" listens on this machine only; \"0.0.0.0:8787\" on every interface".into(),
                    );
                    None
                }
                Some(text) => Some(Some(text.value)),
            },
            Some(None) => None,
            None => Some(None),
        };
        let metrics = match props.get("metrics").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => match &e.kind {
                ExprKind::Bool(b) => Some(*b),
                _ => {
                    self.error(
                        Code::InvalidValue,
                        "`metrics` must be `true` or `false`",
                        e.span,
                        "expected true or false",
                    );
                    None
                }
            },
            Some(None) => None,
            None => Some(false),
        };
        Some(Server {
            listen: listen?,
            metrics: metrics?,
        })
    }
}
