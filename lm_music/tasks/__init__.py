"""The tasks: one folder per kind of model (lyrics, piano rolls, event tokens), each holding its codec, data
module, LightningModule, sampler and evaluation, and `registry.TASKS` listing them. What the folders share is
here too: `task.Task` (what a folder says of itself), `sampler.py` (the sampler bases, without Lightning) and
`lit_module.py` (the LightningModule bases)."""
