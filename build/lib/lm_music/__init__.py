"""lm_music: generative RNNs of song lyrics and polyphonic piano music."""
