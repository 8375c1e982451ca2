"""The teachable machine's pages and websockets: capture examples, train live, test, publish."""
