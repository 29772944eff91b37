"""vit_jax_stems: patchify stem, conv stem (ViT_C) and GPSA (ConViT) vision transformers in JAX/Flax Linen."""
