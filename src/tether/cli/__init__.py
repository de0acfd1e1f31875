"""The `tether` command line: typer commands with rich output."""
