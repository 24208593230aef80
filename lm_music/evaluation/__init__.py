"""Judging samples: per-piece / per-song features of samples and of real data, and one comparison.

`music` (features of rolls), `lyrics` (features of texts and the memorisation index), `compare` (overlapping
area and KL divergence of two sets' values), `kinds` (per task: reading samples, the reference and the
anchors), `report` (the table, evaluation.json, the PNG). The command is `python -m lm_music.evaluate`.
"""
