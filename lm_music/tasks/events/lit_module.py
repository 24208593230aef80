import math

import torch

from lm_music import midi
from lm_music.audio import AudioRenderer
from lm_music.tasks.events.codec import velocity_roll
from lm_music.tasks.events.sampler import EventSampler
from lm_music.tasks.lit_module import TokenLitModule


class EventLitModule(TokenLitModule):
    """An event-token model of MIDI (MidiTok tokens: pitch, velocity, duration, time, pedal, tempo); the
    tokenizer's full parameters are a hyperparameter, so a checkpoint alone is enough to sample.

    `nll_token` is nats per predicted token (the loss). Tokens of different tokenizers are not the same
    units (a BPE token is several base tokens; REMI spends a Bar and a Position where TSD spends a TimeShift),
    so two more figures are pooled over the same files whatever the tokenizer: `bits_per_note`, the split's
    total NLL in bits over its number of notes, and `nats_per_second`, its total NLL over its seconds of music.
    Both use the split's totals (`EventDataModule.counts`): over a whole split they are exact; on part of one
    (`limit_val_batches`) they are the part's per-token NLL at the split's notes (seconds) per token.
    """

    metric_names = ("loss", "nll_token", "bits_per_note", "nats_per_second")
    sampler_class = EventSampler
    counts: dict[str, dict[str, float]] = {}

    def setup(self, stage: str) -> None:
        """The data module's per-split totals of predicted tokens, notes and seconds."""
        datamodule = getattr(self.trainer, "datamodule", None)
        self.counts = dict(getattr(datamodule, "counts", None) or {})

    def extra_terms(self, nll_sum: torch.Tensor, count: torch.Tensor) -> dict:
        terms = {"nll_token": (nll_sum, count)}
        if self.training or not self.counts:  # training logs the loss only; no data module: no totals
            return terms
        split = self.counts["test" if self.trainer.testing else "valid"]
        if split["tokens"]:
            for name, per, scale in (
                ("bits_per_note", "notes", math.log(2)),
                ("nats_per_second", "seconds", 1),
            ):
                terms[name] = (nll_sum / scale, count * (split[per] / split["tokens"]))
        return terms

    def sample(self, num_samples: int, length: int, temperature: float = 1.0, **kwargs) -> list[list[int]]:
        """See `EventSampler.sample`."""
        return self.sampler.sample(num_samples, length, temperature, **kwargs)

    def tracker_samples(
        self, num_samples: int, length: int, temperature: float, generator, renderer: AudioRenderer | None
    ) -> list[dict]:
        """Velocity-shaded rolls of decoded samples for the trackers, and the first one's audio."""
        items = []
        for i, ids in enumerate(self.sample(num_samples, length, temperature, generator=generator)):
            score, _ = self.sampler.codec.decode(ids)
            items.append(
                {"kind": "image", "tag": f"samples/roll_{i}", "value": midi.roll_image(velocity_roll(score))}
            )
            if i == 0 and renderer:
                items.append(
                    {
                        "kind": "audio",
                        "tag": "samples/audio_0",
                        "value": renderer.render(score),
                        "sample_rate": renderer.sample_rate,
                    }
                )
        return items
