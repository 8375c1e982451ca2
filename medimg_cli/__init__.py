"""The `medimg` command line: runs the stack on one machine and calls its gateway."""
