"""The sans-IO protocol core: codecs, crypto and state machines; no sockets, clocks or files."""
