"""`python main.py` run as a user runs it, for the tests of what a user sees on the command line."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*argv, timeout=300, env=None):
  """The finished `python main.py *argv` subprocess, run in the repository root (text output)."""
  return subprocess.run(
    [sys.executable, 'main.py', *argv],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
    check=False,
  )
