"""distill: train the input (student, e.g. a pruned model) to match a fine-tuned teacher.

loss = α·T²·KL(teacher/T ‖ student/T) + (1−α)·CE(labels) + β·MSE(hidden states), see
ops/distillation.py. Hidden states: student layer i ↔ teacher layer m(i). `layer_map: auto` uses
the layer each student layer was pruned from when the student descends from the teacher (the prune
stage records it), else an even spread (last ↔ last); a learned linear projection bridges
different widths. Trains on the train split with HF Trainer, validates each epoch, keeps the best.

Image tasks (CNNs): logits only (KL + CE); `beta` must be left out or 0 and `layer_map` is not used.

Defaults (T 2, α 0.5, β 1, lr 1e-4, 4 epochs) are the settings every distilled figure in the README
was measured with (README, "Pruning and distillation"); other values were not compared.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, NonNegativeInt

from ..errors import StageError
from ..schema import REF_RE
from .training import TrainConfig, lineage, train_classifier

log = logging.getLogger("edgeft")


class DistillConfig(TrainConfig):
    type: Literal["distill"]
    teacher: str = Field(pattern=REF_RE, description="@stage of the fine-tuned teacher")
    epochs: float = Field(4.0, gt=0)
    lr: float = Field(1e-4, gt=0, le=1)
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target (KL) term; 1-α for labels")
    beta: float = Field(1.0, ge=0, description="weight of the hidden-state MSE; 0 turns it off")
    layer_map: Literal["auto"] | list[NonNegativeInt] = Field(
        "auto", description="teacher layer for each student layer (hidden-state loss)")

    def refs(self):
        return [("teacher", self.teacher, ("torch",))]

    def check(self, recipe, stages) -> list[tuple[str, str]]:
        from .graph import input_stage
        from .training import task_knob_problems

        problems = task_knob_problems(self, recipe)
        if recipe.task == "image-classification":
            if self.beta not in (0, type(self).model_fields["beta"].default):
                problems.append(("beta", "image tasks distill logits only (no hidden-state loss): leave beta out or 0"))
            if self.layer_map != "auto":
                problems.append(("layer_map", "maps transformer layers for the hidden-state loss; image tasks "
                                              "distill logits only"))
        student = input_stage(stages, self)
        if student is not None and "@" + student.name == self.teacher:
            problems.append(("teacher", f"{self.teacher} is also the student (input); distill a pruned or smaller "
                                        f"model into which the teacher's knowledge goes"))
        return problems


def run(cfg: DistillConfig, inputs: dict, ctx):
    import torch

    from ..ops.distillation import uniform_layer_map
    from .training import load_input

    task, splits, teacher_art = ctx.task, ctx.splits(), inputs["teacher"]
    src, processor, student = load_input(inputs, ctx)
    teacher = task.load_model(teacher_art.main_path)
    _check_pair(student, teacher, splits.label_names)
    if not task.HIDDEN_STATE_KD:           # CNN: logit distillation only
        kd = cfg.model_copy(update={"beta": 0.0})
        log.info("distill: logits only (T=%g α=%g)", cfg.temperature, cfg.alpha)
        meta = train_classifier(student, processor, cfg, ctx, trainer_cls=_distill_trainer(),
                                trainer_kwargs=dict(teacher=teacher, cfg=kd, layer_map=[], projections=None))
        meta.update({"teacher": teacher_art.key, "teacher_val_accuracy": teacher_art.meta.get("val_accuracy"),
                     "temperature": cfg.temperature, "alpha": cfg.alpha, "beta": 0.0, "loss": "logits (KL + CE)"})
        return ctx.artifact(kind="torch", file="", meta=meta)

    ls, lt = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    if cfg.layer_map != "auto":
        layer_map = list(cfg.layer_map)
        if len(layer_map) != ls or max(layer_map) >= lt:
            raise StageError(f"distill: layer_map {layer_map} needs {ls} entries (one per student layer), "
                             f"each below the teacher's {lt} layers")
        how = "explicit"
    elif src is not None and src.meta.get("layer_origin_of") == teacher_art.key and \
            len(src.meta.get("layer_origin", [])) == ls:
        layer_map, how = list(src.meta["layer_origin"]), "pruned-from"
    else:
        layer_map, how = uniform_layer_map(ls, lt), "uniform"
    ds, dt = student.config.hidden_size, teacher.config.hidden_size
    projections = None
    if cfg.beta > 0 and ds != dt:
        projections = torch.nn.ModuleList([torch.nn.Linear(ds, dt) for _ in range(ls)])
    log.info("distill: student %d layers ← teacher %d layers, hidden map %s (%s); T=%g α=%g β=%g",
             ls, lt, layer_map, how, cfg.temperature, cfg.alpha, cfg.beta)

    meta = train_classifier(student, processor, cfg, ctx, trainer_cls=_distill_trainer(),
                            trainer_kwargs=dict(teacher=teacher, cfg=cfg, layer_map=layer_map, projections=projections))
    meta.update({"teacher": teacher_art.key, "teacher_val_accuracy": teacher_art.meta.get("val_accuracy"),
                 "layer_map": layer_map, "layer_map_from": how, "temperature": cfg.temperature,
                 "alpha": cfg.alpha, "beta": cfg.beta})
    return ctx.artifact(kind="torch", file="", meta={**meta, **lineage(src)})


def _check_pair(student, teacher, label_names):
    t_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if t_labels != list(label_names):
        raise StageError(f"distill: the teacher's classes {t_labels} differ from the data's {list(label_names)}")
    sv, tv = getattr(student.config, "vocab_size", None), getattr(teacher.config, "vocab_size", None)
    if sv != tv:
        raise StageError(f"distill: student and teacher must share a tokenizer (vocab {sv} vs {tv})")


def _distill_trainer():
    import torch
    from transformers import Trainer

    from ..ops.distillation import distillation_loss

    class DistillTrainer(Trainer):
        def __init__(self, *args, teacher, cfg, layer_map, projections, **kw):
            super().__init__(*args, **kw)
            self.teacher = teacher.to(self.args.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            self.kd, self.layer_map = cfg, layer_map
            self.projections = projections.to(self.args.device) if projections is not None else None
            self.model_accepts_loss_kwargs = False

        def create_optimizer(self):
            opt = super().create_optimizer()
            if self.projections is not None and not any(
                    p is q for g in opt.param_groups for p in g["params"] for q in self.projections.parameters()):
                opt.add_param_group({"params": list(self.projections.parameters()), "weight_decay": 0.0})
            return opt

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:        # validation: the plain task loss and logits
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            hidden = self.kd.beta > 0
            extra = {"output_hidden_states": True} if hidden else {}    # CNNs take no such argument
            out = model(**inputs, **extra)
            with torch.no_grad():
                t = self.teacher(**inputs, **extra)
            s_h = out.hidden_states[1:] if hidden else ()
            t_h = [t.hidden_states[m + 1] for m in self.layer_map] if hidden else ()
            loss, _ = distillation_loss(out.logits, t.logits, labels, self.kd.temperature, self.kd.alpha,
                                        self.kd.beta, s_h, t_h, inputs.get("attention_mask"), self.projections)
            return (loss, out) if return_outputs else loss

    return DistillTrainer
