/**
 * @file Tree-sitter grammar for hamstr `.hmr` pipeline files.
 *
 * Derived from `grammar/hamstr.pest`, the grammar `hamstr` itself parses with; where
 * the two could differ the pest grammar is right. The JSONPath token (`$.data[*]`,
 * balanced brackets, quoted strings inside) is matched by the external scanner in
 * `src/scanner.c`, which follows the pest rules `jsonpath` .. `jp_quoted`.
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

// Binding powers of `src/syntax/expr.rs`, lowest first; all infix operators are
// left-associative, and `not x == y` is `not (x == y)`.
const PREC = {
  or: 1,
  and: 2,
  not: 3,
  compare: 4,
  coalesce: 5,
  add: 6,
  mul: 7,
  neg: 8,
};

/** `rule` repeated, separated by commas, with an optional trailing comma. */
function commaSep(rule) {
  return optional(seq(rule, repeat(seq(',', rule)), optional(',')));
}

module.exports = grammar({
  name: 'hamstr',

  // Blanks (the byte order mark among them) and `#` comments may stand between any
  // two tokens.
  extras: $ => [/[ \t\r\n\uFEFF]/, $.comment],

  externals: $ => [$.jsonpath],

  // Keywords match only as whole words: `order` is a name, `note` is not `not`.
  word: $ => $.identifier,

  // Keywords cannot name a declaration or be referred to (`model from` is an error);
  // properties, fields, types and arguments may be called anything (`model = Order`,
  // `from = [orders]`), as `ident_any` in the pest grammar.
  reserved: {
    global: _ => [
      'service', 'model', 'source', 'sink', 'flow', 'aggregate', 'from',
      'and', 'or', 'not', 'true', 'false', 'null',
    ],
    any_name: _ => [],
  },

  rules: {
    source_file: $ => repeat($._item),

    _item: $ => choice(
      $.service_declaration,
      $.model_declaration,
      $.source_declaration,
      $.sink_declaration,
      $.flow_declaration,
      $.aggregate_declaration,
      $.tenants_declaration,
      $.server_declaration,
    ),

    // `service till for shops { ... }`: instantiated once per tenant (spec §13).
    service_declaration: $ => seq(
      'service',
      field('name', $.identifier),
      optional(seq('for', field('tenants', $.identifier))),
      field('body', $.block),
    ),

    // `tenants shops = csv("shops.csv")`
    tenants_declaration: $ => seq('tenants', field('name', $.identifier), '=', field('value', $._expression)),

    model_declaration: $ => seq('model', field('name', $.identifier), field('body', $.model_body)),

    source_declaration: $ => seq(
      'source',
      field('name', $.identifier),
      'from',
      field('service', $.identifier),
      field('body', $.block),
    ),

    sink_declaration: $ => seq('sink', field('name', $.identifier), '=', field('value', $._expression)),

    flow_declaration: $ => seq('flow', field('from', $.name_list), '->', field('to', $.name_list)),

    aggregate_declaration: $ => seq('aggregate', field('name', $.identifier), field('body', $.block)),

    // hamstr's own listener; `server` is no reserved word (nothing else starts an item).
    server_declaration: $ => seq('server', field('body', $.block)),

    model_body: $ => seq('{', repeat(seq($.model_field, optional(','))), '}'),

    model_field: $ => seq(field('name', $._any_name), ':', field('type', $.type)),

    // `string`, `datetime?`: the `?` follows the name with no blank between.
    type: $ => seq(field('name', $._any_name), optional(alias(token.immediate('?'), $.optional))),

    name_list: $ => seq($.identifier, repeat(seq(',', $.identifier))),

    block: $ => seq('{', repeat(seq($._statement, optional(','))), '}'),

    _statement: $ => choice($.property, $.block_property, $.typed_property),

    // `name = value`; the name may be a string (`"X-Client" = "hamstr"`).
    property: $ => seq(field('name', $._property_name), '=', field('value', $._expression)),

    // `retry { attempts = 5 }`
    block_property: $ => seq(field('name', $._property_name), field('body', $.block)),

    // `id : string = $.id` in `fields`
    typed_property: $ => seq(
      field('name', $._property_name),
      ':',
      field('type', $.type),
      '=',
      field('value', $._expression),
    ),

    // Keywords are ordinary names here (`model = Order`, `from = [orders]`): the word
    // is a keyword only where the grammar expects one.
    _property_name: $ => choice($._any_name, $.string),

    _any_name: $ => reserved('any_name', $.identifier),

    _expression: $ => choice(
      $.binary_expression,
      $.unary_expression,
      $._primary,
    ),

    _primary: $ => choice(
      $.jsonpath,
      $.string,
      $.call,
      $.reference,
      $.rate,
      $.duration,
      $.number,
      $.parenthesized_expression,
      $.list,
      $.object,
      $.true,
      $.false,
      $.null,
    ),

    unary_expression: $ => choice(
      prec(PREC.neg, seq(field('operator', '-'), field('operand', $._expression))),
      prec(PREC.not, seq(field('operator', 'not'), field('operand', $._expression))),
    ),

    binary_expression: $ => {
      const table = [
        [PREC.or, 'or'],
        [PREC.and, 'and'],
        [PREC.compare, choice('==', '!=', '<=', '>=', '<', '>')],
        [PREC.coalesce, '??'],
        [PREC.add, choice('+', '-')],
        [PREC.mul, choice('*', '/')],
      ];
      return choice(...table.map(([p, op]) => prec.left(/** @type {number} */ (p), seq(
        field('left', $._expression),
        // @ts-ignore
        field('operator', op),
        field('right', $._expression),
      ))));
    },

    parenthesized_expression: $ => seq('(', $._expression, ')'),

    list: $ => seq('[', commaSep($._argument), ']'),

    // A JSON object written as a value: `sorts = [{ field = "updated" }]`.
    object: $ => seq('{', repeat(seq($._statement, optional(','))), '}'),

    call: $ => seq(field('function', $.identifier), field('arguments', $.arguments)),

    arguments: $ => seq('(', commaSep($._argument), ')'),

    _argument: $ => choice($.named_argument, $._expression),

    named_argument: $ => seq(field('name', $._any_name), '=', field('value', $._expression)),

    // `created_at`, `parent.id`: the dots stand between the names with no blank.
    reference: $ => seq(
      $.identifier,
      repeat(seq(token.immediate('.'), alias(token.immediate(/[A-Za-z_][A-Za-z0-9_]*/), $.field))),
    ),

    // Durations and rates are taken loosely (`5x`, `3/week`), as hamstr's parser takes
    // them, so that `check` can say what is wrong with them.
    rate: _ => token(/[0-9]+\/[A-Za-z][A-Za-z0-9_]*/),
    duration: _ => token(/[0-9]+[A-Za-z][A-Za-z0-9_]*/),
    number: _ => token(/[0-9]+(\.[0-9]+)?/),

    true: _ => 'true',
    false: _ => 'false',
    null: _ => 'null',

    // Any character but `"`, `\` and a newline, or an escape; `check` says which
    // escapes are valid (`\" \\ \n \t \r \u{XXXX}`).
    string: $ => seq(
      '"',
      repeat(choice(alias(token.immediate(prec(1, /[^"\\\n]+/)), $.string_content), $.escape_sequence)),
      token.immediate('"'),
    ),

    escape_sequence: _ => token.immediate(seq('\\', choice(/u\{[0-9A-Fa-f]*\}/, /(.|\n)/))),

    comment: _ => token(seq('#', /[^\n]*/)),

    identifier: _ => /[A-Za-z_][A-Za-z0-9_]*/,
  },
});
