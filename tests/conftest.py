"""Test-wide setup: eight fake CPU devices so sharding code runs on one CPU machine."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Must happen before the JAX backend initialises; tests that need fewer devices use a sub-mesh.
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
