"""The `wft` command-line tool: validate, render, prepare, train, up, demo."""
