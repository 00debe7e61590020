"""Command-line interface: ``localdisc SUBCOMMAND --help``."""
