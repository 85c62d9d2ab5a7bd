"""The toy world: a small synthetic world where RISE's three models are pretrained from scratch
on a 2-core CPU (CLIP, SAM2, the policy's base grounding), so GRPO with R_sem has something to
transfer. See docs/toy.md."""
