"""Where instances run: images mapped to launch commands, and the local process runtime."""
