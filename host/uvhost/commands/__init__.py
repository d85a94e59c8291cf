"""The command implementations behind `uvhost`; `cli.py` only parses arguments."""
