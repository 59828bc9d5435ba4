"""The `hf-genrec` subcommands that are more than one library call (`benchmark`, `quickstart`).

The other subcommands call the library directly from `hf_genrec.cli`: `hf_genrec.data.prepared`
(`prepare`) and `hf_genrec.workflows` (`pretrain`, `reward`, `posttrain`, `evaluate`). Nothing in the library
imports this package.
"""
