; Highlights for hamstr `.hmr` files.
;
; Where several patterns capture one node, the last one wins (tree-sitter-highlight,
; `tree-sitter highlight`, Neovim, Helix): the general patterns come first, the
; specific ones after them.

; Literals
(string) @string
(escape_sequence) @string.escape
(jsonpath) @string.special
(number) @number
(duration) @number
(rate) @number
[
  (true)
  (false)
] @boolean
(null) @constant.builtin

; Operators and punctuation
[
  "="
  "=="
  "!="
  "<"
  "<="
  ">"
  ">="
  "+"
  "-"
  "*"
  "/"
  "??"
  "->"
] @operator

[
  "{"
  "}"
  "["
  "]"
  "("
  ")"
] @punctuation.bracket

[
  ","
  ":"
  "."
] @punctuation.delimiter

; Declarations
[
  "service"
  "model"
  "source"
  "sink"
  "flow"
  "aggregate"
  "from"
  "tenants"
  "for"
  "server"
] @keyword

[
  "and"
  "or"
  "not"
] @keyword.operator

(service_declaration name: (identifier) @module)
(service_declaration tenants: (identifier) @variable)
(tenants_declaration name: (identifier) @variable)
(source_declaration name: (identifier) @function)
(source_declaration service: (identifier) @module)
(aggregate_declaration name: (identifier) @function)
(sink_declaration name: (identifier) @variable)
(model_declaration name: (identifier) @type)
(name_list (identifier) @variable)

; Models and types
(model_field name: (identifier) @variable.member)
(type name: (identifier) @type)
((type name: (identifier) @type.builtin)
  (#any-of? @type.builtin "string" "int" "float" "decimal" "bool" "datetime" "json"))
(type (optional) @punctuation.special)

; Properties and blocks (a property's name may be a string: `"X-Client" = "hamstr"`)
(property name: (_) @property)
(block_property name: (_) @property)
(typed_property name: (_) @variable.member)

; Names, and the bare words some properties take (`schedule = once`,
; `order = newest_first`, `in = body`)
(reference (identifier) @variable)
(reference (field) @variable.member)

((reference . (identifier) @variable.builtin)
  (#any-of? @variable.builtin "parent" "watermark"))

((reference . (identifier) @constant.builtin .)
  (#any-of? @constant.builtin "once" "none" "newest_first" "oldest_first" "body" "query"))

; Calls and their arguments
(call function: (identifier) @function.call)
(named_argument name: (identifier) @variable.parameter)

; Paginators, auth, schedules, sinks, header() and the functions of expressions and
; aggregates, as `check` knows them (src/check/).
((call function: (identifier) @function.builtin)
  (#any-of? @function.builtin
    "page" "offset" "cursor" "next_url" "link_header" "header"
    "bearer" "basic" "api_key" "oauth2" "aws_sigv4"
    "every" "cron"
    "sled" "jsonl" "stdout" "postgres" "webhook" "exec"
    "hmac" "stripe" "standard" "token"
    "lower" "upper" "trim" "concat" "coalesce" "to_string" "to_int" "to_float"
    "to_decimal" "parse_datetime" "from_unix" "from_unix_ms" "now" "day" "hour"
    "month" "year" "round" "abs" "length" "unix" "unix_ms" "format_datetime"
    "count" "sum" "min" "max" "avg" "count_distinct"))

; Secrets: `env("NAME")` reads the environment, and what it gives is masked wherever
; hamstr prints; the arguments that carry credentials.
((call function: (identifier) @function.macro)
  (#eq? @function.macro "env"))

((named_argument name: (identifier) @variable.parameter.builtin)
  (#any-of? @variable.parameter.builtin
    "token" "password" "value" "secret" "client_secret" "secret_key" "access_key"
    "session_token" "refresh_token"))

(comment) @comment
