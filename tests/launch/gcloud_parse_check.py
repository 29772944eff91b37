"""Parses gcloud command lines with the installed gcloud's own argument parser, runs nothing.

Run with a python that gcloud supports (its bundled one if present), not the project venv:
    CLOUDSDK_ROOT_DIR=/usr/lib/google-cloud-sdk python3 gcloud_parse_check.py < argvs.jsonl
Input: one JSON list per line (the argv after `gcloud`). Output: one JSON object per line,
{"ok": true, "command": "gcloud.compute.tpus.tpu-vm.create"} or {"ok": false, "error": ...}.

Why not run `gcloud ...` itself: every command gets past parsing only to call the TPU API,
so the exit status cannot separate "bad flag" from "no credentials", and ssh/scp would also
make keys. The calliope CLI object parses exactly as `gcloud` does (same parser, same flag
definitions from the installed surface specs, resource arguments included) and stops there:
Execute() would next call the command's Run(), which is never reached, so no network call.
"""

import contextlib
import json
import os
import sys
import tempfile

ROOT = os.environ['CLOUDSDK_ROOT_DIR']
sys.path[:0] = [os.path.join(ROOT, 'lib'), os.path.join(ROOT, 'lib', 'third_party')]

from googlecloudsdk import gcloud_main  # noqa: E402  pylint: disable=g-import-not-at-top


@contextlib.contextmanager
def captured_fd2(sink):
  """Sends file descriptor 2 to `sink`: gcloud writes parse errors through its own log
  handlers, which hold the original stderr, so sys.stderr redirection would miss them."""
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(sink.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


cli = gcloud_main.CreateCLI([])
parser = cli._CLI__parser  # pylint: disable=protected-access  # what CLI.Execute parses with

for line in sys.stdin:
  argv = json.loads(line)
  err = tempfile.TemporaryFile(mode='w+')
  try:
    with captured_fd2(err):
      args = parser.parse_args(argv)
      if args.CONCEPT_ARGS is not None:
        args.CONCEPT_ARGS.ParseConcepts()
      command = '.'.join(args._GetCommand().GetPath())  # pylint: disable=protected-access
    result = {'ok': True, 'command': command}
  except SystemExit as e:  # argparse errors exit(2) after printing the reason
    err.seek(0)
    result = {'ok': False, 'error': err.read().strip() or f'exit {e.code}'}
  except Exception as e:  # pylint: disable=broad-except
    result = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
  print(json.dumps(result), flush=True)
