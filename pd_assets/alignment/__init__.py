"""Stage 4 of the method: align the generator to its control with Diffusion-DPO."""
