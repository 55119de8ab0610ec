"""One module per `wft` subcommand: add_arguments(parser) and run(args) -> exit code."""
