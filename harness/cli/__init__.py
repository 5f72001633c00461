"""The `xrbench` command: parsing and printing over the stages."""
