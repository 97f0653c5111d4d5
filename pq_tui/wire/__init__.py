"""What the server and its clients share: the protocol, its errors, and where the socket lives."""
