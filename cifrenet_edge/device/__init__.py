"""What this machine can run: the device check, ``info --env``, and the device install's CLI.

Standard library at import time and Python 3.8 syntax: the device distribution ships it.
"""
