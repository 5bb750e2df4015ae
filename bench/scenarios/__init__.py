"""One module per scenario; each runs in its own client process and prints one JSON line."""
