"""The toy world's models: CLIP, SAM2 and the policy's base grounding pretrained from scratch on a
2-core CPU (clip.py, sam2.py, policy.py, run by the `pretrain` stage through pipeline.py), so GRPO
with R_sem has something to transfer; and the check of the paper's claim on a toy table (claim.py,
`rise claim`). The world itself (scenes, instructions, exact masks) is a dataset loader:
rise/data/toy_world.py. Research tools that are not stages: experiments/toy/. See docs/toy.md."""
