"""What control-adapter and DPO training share: diffusion targets, the resumable loop,
checkpoints. Pure: nothing here knows about Dagster."""
