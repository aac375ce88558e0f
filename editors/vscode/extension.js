// The hamstr extension: `.hmr` files are highlighted by the TextMate grammar, and
// `hamstr lsp` (started over stdio) gives check's diagnostics as you type, completion,
// hover, go to definition, document symbols and formatting.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

/** @type {LanguageClient | undefined} */
let client;

function serverOptions() {
  const command = vscode.workspace.getConfiguration('hamstr').get('path') || 'hamstr';
  const run = { command, args: ['lsp'], transport: TransportKind.stdio };
  return { run, debug: run };
}

async function start() {
  client = new LanguageClient(
    'hamstr',
    'hamstr language server',
    serverOptions(),
    {
      documentSelector: [
        { scheme: 'file', language: 'hamstr' },
        { scheme: 'untitled', language: 'hamstr' },
      ],
    },
  );
  try {
    await client.start();
  } catch (err) {
    const path = vscode.workspace.getConfiguration('hamstr').get('path');
    vscode.window.showErrorMessage(
      `Could not start \`${path} lsp\`: ${err && err.message ? err.message : err}. ` +
        'Install hamstr (cargo install --path .) or set "hamstr.path".',
    );
  }
}

async function stop() {
  if (client) {
    const c = client;
    client = undefined;
    if (c.isRunning()) await c.stop();
  }
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('hamstr.restartServer', async () => {
      await stop();
      await start();
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('hamstr.path')) {
        await stop();
        await start();
      }
    }),
  );
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
