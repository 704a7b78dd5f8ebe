"""The target role: targets, sessions, connections (sans-IO) and the command engine."""
