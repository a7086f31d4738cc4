"""One module per CLI command that outgrew cli.py: each defines a click command that cli.py adds to the group."""
