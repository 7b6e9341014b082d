"""Browser tests of the ops UI: a real api-server, driven by Debian's headless chromium through playwright."""
