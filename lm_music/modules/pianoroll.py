from typing import Any

import torch

from lm_music import midi
from lm_music.errors import UserError
from lm_music.modules.base import SequenceLM
from lm_music.samplers import PianoRollSampler


class PianoRollLM(SequenceLM):
    """A piano-roll RNN scored as the benchmark literature scores it.

    `nll` is nats per frame summed over the 88 keys, pooled over a split as sum(NLL) / sum(T_i - 1), the first
    frame never scored (Bai, Kolter and Koltun 2018); `frame_acc` is TP / (TP + FP + FN) of the most likely
    frame (Bay et al. 2009). With `tbptt_steps`, training runs chunks of that many frames, one optimiser step
    each, carrying the detached RNN state from chunk to chunk; pieces that have ended leave the later chunks.
    """

    task = "pianoroll"
    metric_names = ("loss", "nll", "frame_acc")

    def __init__(
        self,
        tbptt_steps: int | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        **net: Any,
    ) -> None:
        """`net`: the arguments of `PianoRollSampler` (time grid, openings, sizes, head), which builds the
        network."""
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters()
        if tbptt_steps is not None and tbptt_steps < 2:
            raise UserError(f"model.tbptt_steps must be at least 2 (or null), got {tbptt_steps}")
        if tbptt_steps and scheduler and scheduler.get("name") != "cosine":
            raise UserError(
                "with model.tbptt_steps only model.scheduler={name: cosine} (or null) is supported"
            )
        self.tbptt_steps = tbptt_steps
        self.automatic_optimization = not tbptt_steps
        self.manual_gradient_clip_val: float | None = None
        self.sampler = PianoRollSampler(**net)
        self.net = self.sampler.net

    def forward(self, frames: torch.Tensor, state=None):
        return self.net(frames, state)

    def _terms(self, inputs, targets, mask, state=None, with_accuracy=True):
        h, state = self(inputs, state)
        frame_nll = self.net.head.nll(h, targets)
        nll_sum = (frame_nll * mask).sum()
        count = mask.sum()
        extra = {"nll": (nll_sum, count)}
        if with_accuracy:
            with torch.no_grad():
                predicted = self.net.head.predict(h) * mask[..., None]
                true_pos = (predicted * targets).sum()
                wrong = (predicted * (1 - targets)).sum() + (
                    (1 - predicted) * targets * mask[..., None]
                ).sum()
            extra["frame_acc"] = (true_pos, true_pos + wrong)
        return nll_sum, count, extra, state

    @staticmethod
    def _split(batch: dict):
        rolls = batch["sequences"].float()
        inputs, targets = rolls[:, :-1], rolls[:, 1:]
        steps = torch.arange(targets.shape[1], device=rolls.device)
        mask = (steps[None, :] < (batch["lengths"][:, None] - 1)).float()
        return inputs, targets, mask

    def loss_terms(self, batch: dict):
        # Frame accuracy is only reported for validation and test; with the NADE head it costs an 88-step loop.
        nll_sum, count, extra, _ = self._terms(*self._split(batch), with_accuracy=not self.training)
        return nll_sum, count, extra

    def training_step(self, batch: dict, batch_idx: int):
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        optimizer = self.optimizers()
        inputs, targets, mask = self._split(batch)
        # Longest piece first, so that the pieces still running in a chunk are its first rows: the ended ones
        # drop out of the chunk and of the carried state instead of being computed as padding.
        order = torch.argsort(batch["lengths"], descending=True)
        inputs, targets, mask = inputs[order], targets[order], mask[order]
        scored = (batch["lengths"][order] - 1).tolist()
        state, total, frames = None, 0.0, 0.0
        for start in range(0, inputs.shape[1], self.tbptt_steps):
            rows = sum(n > start for n in scored)
            if rows == 0:
                break
            if state is not None:
                state = self.net.carry_state(state, rows)
            chunk = slice(start, start + self.tbptt_steps)
            nll_sum, count, _, state = self._terms(
                inputs[:rows, chunk], targets[:rows, chunk], mask[:rows, chunk], state, with_accuracy=False
            )
            optimizer.zero_grad()
            self.manual_backward(nll_sum / count)
            if self.manual_gradient_clip_val:
                self.clip_gradients(optimizer, gradient_clip_val=self.manual_gradient_clip_val)
            optimizer.step()
            total, frames = total + nll_sum.detach(), frames + count
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        loss = total / max(frames, 1)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["lengths"].numel())
        return loss

    def sample(self, num_samples: int, length: int, temperature: float = 1.0, **kwargs) -> torch.Tensor:
        """See `PianoRollSampler.sample`."""
        return self.sampler.sample(num_samples, length, temperature, **kwargs)

    def tracker_samples(self, num_samples: int, length: int, temperature: float, generator) -> list[dict]:
        rolls = self.sample(num_samples, length, temperature, generator=generator).cpu().numpy()
        items = []
        for i, roll in enumerate(rolls):
            items.append({"kind": "image", "tag": f"samples/roll_{i}", "value": midi.roll_image(roll)})
            if i == 0:
                pm = midi.roll_to_midi(roll, self.sampler.frames_per_beat, self.sampler.fs)
                audio, _ = midi.render_audio(pm, sample_rate=16000)
                items.append(
                    {"kind": "audio", "tag": "samples/audio_0", "value": audio, "sample_rate": 16000}
                )
        return items
