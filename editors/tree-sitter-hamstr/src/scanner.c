// The JSONPath token of hamstr's `.hmr` files: `$` and the segments that can follow it,
// as `grammar/hamstr.pest` takes them (rules `jsonpath` to `jp_quoted`):
//
//   jsonpath   = "$" segment*
//   segment    = ".." (name | "*" | bracket)? | "." (name | "*")? | bracket
//   bracket    = "[" inner* ("]" | &"\n" | &EOI | &")")
//   paren      = "(" inner* (")" | &"\n" | &EOI)
//   inner      = quoted | bracket | paren | !("[" | "]" | "(" | ")" | quote | "\n") ANY
//   quoted     = '"' ('\' ANY | !'"' ANY)* '"' | "'" ('\' ANY | !"'" ANY)* "'"
//
// An unclosed bracket thus runs to the end of the line, or to a `)` that closes no `(`
// of its own (as in `next_url($.a[)`), so that `check` can point into it. A segment
// that cannot be completed (an unclosed quote) is left out of the token, which ends
// after the last complete segment, as the PEG's backtracking leaves it.

#include "tree_sitter/parser.h"

#include <stdbool.h>
#include <stdint.h>

enum TokenType { JSONPATH };

void *tree_sitter_hamstr_external_scanner_create(void) { return NULL; }
void tree_sitter_hamstr_external_scanner_destroy(void *payload) { (void)payload; }
unsigned tree_sitter_hamstr_external_scanner_serialize(void *payload, char *buffer) {
  (void)payload;
  (void)buffer;
  return 0;
}
void tree_sitter_hamstr_external_scanner_deserialize(void *payload, const char *buffer,
                                                     unsigned length) {
  (void)payload;
  (void)buffer;
  (void)length;
}

// Nesting deeper than this is refused (the token ends before it) rather than risking
// the stack; hamstr's own parser refuses such files too.
#define MAX_DEPTH 256

static bool at_eof(TSLexer *lexer) { return lexer->eof(lexer); }

static bool is_name_char(int32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c >= 0x80;
}

// A quoted string; false when it is not closed before the end of the input.
static bool scan_quoted(TSLexer *lexer) {
  int32_t quote = lexer->lookahead;
  lexer->advance(lexer, false);
  while (!at_eof(lexer)) {
    int32_t c = lexer->lookahead;
    lexer->advance(lexer, false);
    if (c == quote) return true;
    if (c == '\\') {
      if (at_eof(lexer)) return false;
      lexer->advance(lexer, false);
    }
  }
  return false;
}

static bool scan_group(TSLexer *lexer, bool bracket, unsigned depth);

// What may stand inside brackets and parentheses; false when it fails the group.
static bool scan_inner(TSLexer *lexer, unsigned depth) {
  int32_t c = lexer->lookahead;
  if (c == '"' || c == '\'') return scan_quoted(lexer);
  if (c == '[') return scan_group(lexer, true, depth + 1);
  if (c == '(') return scan_group(lexer, false, depth + 1);
  lexer->advance(lexer, false);
  return true;
}

// `[...]` (bracket) or `(...)`, the opening character at the lookahead.
static bool scan_group(TSLexer *lexer, bool bracket, unsigned depth) {
  if (depth > MAX_DEPTH) return false;
  lexer->advance(lexer, false);
  for (;;) {
    if (at_eof(lexer)) return true;
    int32_t c = lexer->lookahead;
    if (c == '\n') return true;
    if (bracket) {
      if (c == ']') {
        lexer->advance(lexer, false);
        return true;
      }
      if (c == ')') return true;
    } else {
      if (c == ')') {
        lexer->advance(lexer, false);
        return true;
      }
      if (c == ']') return false;
    }
    if (!scan_inner(lexer, depth)) return false;
  }
}

bool tree_sitter_hamstr_external_scanner_scan(void *payload, TSLexer *lexer,
                                              const bool *valid_symbols) {
  (void)payload;
  if (!valid_symbols[JSONPATH]) return false;
  while (lexer->lookahead == ' ' || lexer->lookahead == '\t' || lexer->lookahead == '\r' ||
         lexer->lookahead == '\n' || lexer->lookahead == 0xFEFF) {
    lexer->advance(lexer, true);
  }
  if (lexer->lookahead != '$') return false;
  lexer->advance(lexer, false);
  lexer->mark_end(lexer);
  lexer->result_symbol = JSONPATH;
  for (;;) {
    int32_t c = lexer->lookahead;
    if (c == '.') {
      lexer->advance(lexer, false);
      if (lexer->lookahead == '.') lexer->advance(lexer, false);
      lexer->mark_end(lexer);
      if (lexer->lookahead == '*') {
        lexer->advance(lexer, false);
        lexer->mark_end(lexer);
      } else if (is_name_char(lexer->lookahead)) {
        while (is_name_char(lexer->lookahead)) lexer->advance(lexer, false);
        lexer->mark_end(lexer);
      }
    } else if (c == '[') {
      if (!scan_group(lexer, true, 0)) return true;
      lexer->mark_end(lexer);
    } else {
      return true;
    }
  }
}
