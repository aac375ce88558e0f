#!/bin/sh
# Called by the demo's `announce` sink with new orders as JSON lines on standard input.
while IFS= read -r order; do echo "new order: $order" >&2; done
