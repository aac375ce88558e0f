//! `hamstr lsp`: a language server on standard input and output (spec §16), on
//! rust-analyzer's `lsp-server`. One thread takes the messages in order: the documents
//! as they are typed, `check`'s diagnostics published once typing pauses
//! ([`DEBOUNCE`]), and completion, hover, definition, document symbols and formatting
//! answered from the text as it is (half-typed or not). Positions are UTF-16.

mod analysis;
mod features;
mod position;
mod reference;

use super::{Error, Outcome};
use lsp_server::{Connection, ExtractError, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest, Request as _,
};
use lsp_types::{
    CompletionOptions, CompletionResponse, DocumentSymbolResponse, GotoDefinitionResponse,
    InitializeResult, OneOf, PositionEncodingKind, PublishDiagnosticsParams, ServerCapabilities,
    ServerInfo, TextDocumentSyncCapability, TextDocumentSyncKind, Uri,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long typing must pause before the diagnostics of a changed document are sent.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// `hamstr lsp`: serves until the client says `exit`.
pub fn lsp() -> Result<Outcome, Error> {
    let (connection, io) = Connection::stdio();
    let protocol = |e: lsp_server::ProtocolError| Error::Io(format!("lsp: {e}"));
    let (id, _params) = connection.initialize_start().map_err(protocol)?;
    let result = InitializeResult {
        capabilities: capabilities(),
        server_info: Some(ServerInfo {
            name: "hamstr".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    };
    let result = serde_json::to_value(result).map_err(|e| Error::Io(format!("lsp: {e}")))?;
    connection.initialize_finish(id, result).map_err(protocol)?;
    serve(&connection).map_err(protocol)?;
    drop(connection);
    io.join()
        .map_err(|e| Error::Io(format!("lsp: standard input or output failed: {e}")))?;
    Ok(Outcome::Success)
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(
            TextDocumentSyncKind::INCREMENTAL,
        )),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["=".into(), " ".into(), "{".into()]),
            ..CompletionOptions::default()
        }),
        hover_provider: Some(lsp_types::HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        ..ServerCapabilities::default()
    }
}

/// The open documents, and those whose diagnostics wait for typing to pause.
#[derive(Default)]
struct Documents {
    texts: BTreeMap<String, (Uri, String)>,
    dirty: BTreeSet<String>,
}

fn serve(connection: &Connection) -> Result<(), lsp_server::ProtocolError> {
    let mut docs = Documents::default();
    loop {
        let msg = if docs.dirty.is_empty() {
            match connection.receiver.recv() {
                Ok(m) => m,
                Err(_) => return Ok(()),
            }
        } else {
            match connection.receiver.recv_timeout(DEBOUNCE) {
                Ok(m) => m,
                Err(crossbeam_timeout) if crossbeam_timeout.is_timeout() => {
                    publish_dirty(connection, &mut docs);
                    continue;
                }
                Err(_) => return Ok(()),
            }
        };
        match msg {
            Message::Request(req) => {
                if connection.handle_shutdown(&req)? {
                    return Ok(());
                }
                let resp = answer(&docs, req);
                if connection.sender.send(Message::Response(resp)).is_err() {
                    return Ok(());
                }
            }
            Message::Notification(n) => {
                if n.method == "exit" {
                    return Ok(());
                }
                note(connection, &mut docs, n);
            }
            Message::Response(_) => {}
        }
    }
}

/// The diagnostics of every changed document.
fn publish_dirty(connection: &Connection, docs: &mut Documents) {
    for key in std::mem::take(&mut docs.dirty) {
        let Some((uri, text)) = docs.texts.get(&key) else {
            continue;
        };
        let diagnostics = guarded(|| features::diagnostics(uri.as_str(), text)).unwrap_or_default();
        publish(connection, uri.clone(), diagnostics);
    }
}

fn publish(connection: &Connection, uri: Uri, diagnostics: Vec<lsp_types::Diagnostic>) {
    let params = PublishDiagnosticsParams {
        uri,
        diagnostics,
        version: None,
    };
    let _ = connection
        .sender
        .send(Message::Notification(Notification::new(
            PublishDiagnostics::METHOD.into(),
            params,
        )));
}

/// A document opened, changed or closed.
fn note(connection: &Connection, docs: &mut Documents, n: Notification) {
    match n.method.as_str() {
        DidOpenTextDocument::METHOD => {
            if let Ok(p) =
                n.extract::<lsp_types::DidOpenTextDocumentParams>(DidOpenTextDocument::METHOD)
            {
                let uri = p.text_document.uri;
                let key = uri.as_str().to_string();
                docs.texts.insert(key.clone(), (uri, p.text_document.text));
                docs.dirty.insert(key);
            }
        }
        DidChangeTextDocument::METHOD => {
            if let Ok(p) =
                n.extract::<lsp_types::DidChangeTextDocumentParams>(DidChangeTextDocument::METHOD)
            {
                let key = p.text_document.uri.as_str().to_string();
                let Some((_, text)) = docs.texts.get_mut(&key) else {
                    return;
                };
                for change in p.content_changes {
                    match change.range {
                        None => *text = change.text,
                        Some(range) => {
                            let idx = position::LineIndex::new(text);
                            let start = idx.offset(range.start);
                            let end = idx.offset(range.end).max(start);
                            text.replace_range(start..end, &change.text);
                        }
                    }
                }
                docs.dirty.insert(key);
            }
        }
        DidCloseTextDocument::METHOD => {
            if let Ok(p) =
                n.extract::<lsp_types::DidCloseTextDocumentParams>(DidCloseTextDocument::METHOD)
            {
                let key = p.text_document.uri.as_str().to_string();
                docs.texts.remove(&key);
                docs.dirty.remove(&key);
                publish(connection, p.text_document.uri, Vec::new());
            }
        }
        _ => {}
    }
}

/// Runs `f`, turning a panic into `None`: a bug in one answer must not end the server
/// the editor depends on.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn answer(docs: &Documents, req: Request) -> Response {
    let id = req.id.clone();
    let text_of = |uri: &Uri| {
        docs.texts
            .get(uri.as_str())
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let result: Result<serde_json::Value, String> = match req.method.as_str() {
        Completion::METHOD => params::<Completion>(req).map(|p| {
            let pos = p.text_document_position;
            let text = text_of(&pos.text_document.uri);
            let items = guarded(|| features::completion(&text, pos.position)).unwrap_or_default();
            json(CompletionResponse::Array(items))
        }),
        HoverRequest::METHOD => params::<HoverRequest>(req).map(|p| {
            let pos = p.text_document_position_params;
            let text = text_of(&pos.text_document.uri);
            json(guarded(|| features::hover(&text, pos.position)).flatten())
        }),
        GotoDefinition::METHOD => params::<GotoDefinition>(req).map(|p| {
            let pos = p.text_document_position_params;
            let text = text_of(&pos.text_document.uri);
            let found =
                guarded(|| features::definition(&pos.text_document.uri, &text, pos.position))
                    .flatten();
            json(found.map(GotoDefinitionResponse::Scalar))
        }),
        DocumentSymbolRequest::METHOD => params::<DocumentSymbolRequest>(req).map(|p| {
            let text = text_of(&p.text_document.uri);
            let symbols = guarded(|| features::symbols(&text)).unwrap_or_default();
            json(DocumentSymbolResponse::Nested(symbols))
        }),
        Formatting::METHOD => params::<Formatting>(req).map(|p| {
            let text = text_of(&p.text_document.uri);
            json(guarded(|| features::formatting(&text)).unwrap_or_default())
        }),
        other => {
            return Response::new_err(
                id,
                lsp_server::ErrorCode::MethodNotFound as i32,
                format!("hamstr lsp does not answer `{other}`"),
            )
        }
    };
    match result {
        Ok(value) => Response {
            id,
            result: Some(value),
            error: None,
        },
        Err(e) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, e),
    }
}

fn params<R: lsp_types::request::Request>(req: Request) -> Result<R::Params, String> {
    req.extract::<R::Params>(R::METHOD)
        .map(|(_, p)| p)
        .map_err(|e| match e {
            ExtractError::JsonError { error, .. } => format!("invalid parameters: {error}"),
            ExtractError::MethodMismatch(r) => format!("unexpected method `{}`", r.method),
        })
}

fn json(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
