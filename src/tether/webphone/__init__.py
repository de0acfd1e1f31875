"""The web phone's files (JavaScript, served as they are): the phone's role of docs/protocol.md."""
