"""The phone side: a wallet of car keys and the client that talks to cars."""
