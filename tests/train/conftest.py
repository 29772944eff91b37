"""Trainer tests share the suite-wide setup of tests/conftest.py (fake devices, fast XLA CPU
compilation, persistent compilation cache, repository root on sys.path)."""
