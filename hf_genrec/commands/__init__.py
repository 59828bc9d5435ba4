"""Library entry points behind the `hf-genrec` subcommands; each is one function a script can call."""
