"""The `cassava-edge` subcommands, one module each; `cassava_edge.cli` registers them on the group."""
