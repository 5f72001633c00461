"""Dataset adapters: each reads one dataset's own layout into entries (`base` documents them);
`harness.boards.datasets` lists them."""
