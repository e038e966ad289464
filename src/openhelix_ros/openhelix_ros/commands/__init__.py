"""One module per ``openhelix`` verb: ``add_arguments(parser)`` and ``run(args) -> int``."""
