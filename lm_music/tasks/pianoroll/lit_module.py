from typing import Any

import torch

from lm_music import midi
from lm_music.audio import AudioRenderer
from lm_music.errors import UserError
from lm_music.tasks.lit_module import SequenceLitModule
from lm_music.tasks.pianoroll.sampler import PianoRollSampler


class PianoRollLitModule(SequenceLitModule):
    """A piano-roll model (RNN or Transformer) scored as the benchmark literature scores it.

    `nll` is nats per frame summed over the 88 keys, pooled over a split as sum(NLL) / sum(T_i - 1), the first
    frame not scored (Bai, Kolter and Koltun 2018). A model with a learned start (`model.learned_start`)
    also predicts frame 1 from it: `nll_all` pools frames 1..T as sum(NLL) / sum(T_i) (Boulanger-Lewandowski
    et al. 2012, Krishnan et al. 2017), and `loss` is that, the objective it trains; without one, `loss` is
    `nll`. `frame_acc` is TP / (TP + FP + FN) of the most likely frame over frames 2..T (Bay et al. 2009).
    With `tbptt_steps`, training runs chunks of that many frames, one optimiser step each, carrying the
    detached state from chunk to chunk; pieces that have ended leave the later chunks.
    """

    sampler_class = PianoRollSampler
    metric_names = ("loss", "nll", "nll_all", "frame_acc")

    def __init__(
        self,
        tbptt_steps: int | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        gradient_clip_val: float | None = None,
        **net: Any,
    ) -> None:
        """`net`: the arguments of `PianoRollSampler` (time grid, openings, sizes, head), which builds the
        network."""
        super().__init__(optimizer, scheduler, gradient_clip_val)
        self.save_hyperparameters()
        if tbptt_steps is not None and tbptt_steps < 2:
            raise UserError(f"model.tbptt_steps must be at least 2 (or null), got {tbptt_steps}")
        if tbptt_steps and scheduler and scheduler.get("name") != "cosine":
            raise UserError(
                "with model.tbptt_steps only model.scheduler={name: cosine} (or null) is supported"
            )
        self.tbptt_steps = tbptt_steps
        self.automatic_optimization = not tbptt_steps
        self.sampler = self.sampler_class(**net)
        self.net = self.sampler.net
        # With a learned start the network predicts frame 1 too (and trains on it): `nll_all` is reported.
        self.first_target = 0 if self.net.start is not None else 1

    def forward(self, frames: torch.Tensor, state=None, start: bool = False):
        return self.net(frames, state, start)

    def _terms(self, inputs, targets, scored, scored_all, state=None, start=False, with_accuracy=True):
        """Summed NLL and counts of one stretch of target frames; the loss is over every target frame."""
        h, state = self(inputs, state, start)
        frame_nll = self.net.head.nll(h, targets)
        extra = {"nll": ((frame_nll * scored).sum(), scored.sum())}
        if self.first_target == 0:
            extra["nll_all"] = ((frame_nll * scored_all).sum(), scored_all.sum())
        if with_accuracy:
            with torch.no_grad():
                predicted = self.net.head.predict(h) * scored[..., None]
                true_pos = (predicted * targets).sum()
                wrong = (predicted * (1 - targets)).sum() + (
                    (1 - predicted) * targets * scored[..., None]
                ).sum()
            extra["frame_acc"] = (true_pos, true_pos + wrong)
        return (frame_nll * scored_all).sum(), scored_all.sum(), extra, state

    def _split(self, batch: dict):
        """Inputs (frames 1..T-1), targets (frames 2..T, or 1..T after a learned start), and two masks over
        the targets: `scored` frames 2..T (`nll`, `frame_acc`) and `scored_all` every real frame (the loss)."""
        rolls = batch["sequences"].float()
        targets = rolls[:, self.first_target :]
        frame = torch.arange(targets.shape[1], device=rolls.device) + self.first_target  # 0 = frame 1
        scored_all = (frame[None, :] < batch["lengths"][:, None]).float()
        scored = scored_all * (frame[None, :] >= 1)
        return rolls[:, :-1], targets, scored, scored_all

    def loss_terms(self, batch: dict):
        # Frame accuracy is only reported for validation and test; with the NADE head it costs an 88-step loop.
        start = self.first_target == 0
        nll_sum, count, extra, _ = self._terms(
            *self._split(batch), start=start, with_accuracy=not self.training
        )
        return nll_sum, count, extra

    def training_step(self, batch: dict, batch_idx: int):
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        optimizer = self.optimizers()
        inputs, targets, scored, scored_all = self._split(batch)
        # Longest piece first, so that the pieces still running in a chunk are its first rows: the ended ones
        # drop out of the chunk and of the carried state instead of being computed as padding.
        order = torch.argsort(batch["lengths"], descending=True)
        inputs, targets, scored, scored_all = inputs[order], targets[order], scored[order], scored_all[order]
        targets_per_row = scored_all.sum(1).tolist()
        behind = 1 - self.first_target  # 1 with a learned start: target t from input t - 1 (t = 0: the start)
        state, total, frames = None, 0.0, 0.0
        for begin in range(0, targets.shape[1], self.tbptt_steps):
            rows = sum(n > begin for n in targets_per_row)
            if rows == 0:
                break
            if state is not None:
                state = self.net.carry_state(state, rows)
            chunk = slice(begin, begin + self.tbptt_steps)
            start = begin == 0 and behind == 1
            chunk_inputs = inputs[:rows, max(begin - behind, 0) : begin + self.tbptt_steps - behind]
            nll_sum, count, _, state = self._terms(
                chunk_inputs,
                targets[:rows, chunk],
                scored[:rows, chunk],
                scored_all[:rows, chunk],
                state,
                start,
                with_accuracy=False,
            )
            optimizer.zero_grad()
            self.manual_backward(nll_sum / count)
            self.configure_gradient_clipping(optimizer)
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

    def tracker_samples(
        self, num_samples: int, length: int, temperature: float, generator, renderer: AudioRenderer | None
    ) -> list[dict]:
        rolls = self.sample(num_samples, length, temperature, generator=generator).cpu().numpy()
        items = []
        for i, roll in enumerate(rolls):
            items.append({"kind": "image", "tag": f"samples/roll_{i}", "value": midi.roll_image(roll)})
            if i == 0 and renderer:
                pm = midi.roll_to_midi(roll, self.sampler.frames_per_beat, self.sampler.fs)
                items.append(  # with the MIDI it was rendered from, for the trackers that keep files (MLflow)
                    {
                        "kind": "audio",
                        "tag": "samples/audio_0",
                        "value": renderer.render(pm),
                        "sample_rate": renderer.sample_rate,
                        "midi": pm,
                    }
                )
        return items
