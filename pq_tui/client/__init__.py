"""The client side of the server: starting it, talking to it, and RemoteEngine, its mirror."""
