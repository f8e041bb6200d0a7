"""The course autograder: hidden checks, sandboxed execution of student code, Gradescope results.

See docs/AUTOGRADER_DESIGN.md for the contract between the sandbox and the hidden checks.
"""
