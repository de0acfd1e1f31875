"""The demo world and its web console: watch a car, two phones and an attacker, and click."""
