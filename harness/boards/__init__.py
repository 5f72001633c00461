"""Boards: the board file (`spec`), the datasets and tasks a board can name, slices, frozen split
manifests (`splits`) and freezing them (`freeze`)."""
