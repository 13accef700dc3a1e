"""Command-line interface: thin argparse subcommands over the library; no logic of their own."""
