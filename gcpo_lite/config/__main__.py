"""`python -m gcpo_lite.config` prints the README's option table, generated from the field metadata."""

from gcpo_lite.config import options_markdown

print(options_markdown(), end="")
