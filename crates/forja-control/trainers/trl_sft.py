#!/usr/bin/env python3
"""forja's TRL backend: LoRA SFT on TRL + PEFT (accelerate, DeepSpeed ZeRO).

`forja worker --backend trl` runs this once per job (through `accelerate
launch` when the worker offers several GPUs) with `--plan PLAN.json`, which
forja writes: the base model, the job's data already tokenized by forja
(`input_ids` and `labels`, -100 where no loss is taken: the masks forja's
native trainer uses), the LoRA and optimiser settings, the output directory.

It writes a PEFT adapter into the output directory (the weights kept: the
best validation loss when there is validation data, else the last step),
Hugging Face checkpoints under `OUT/checkpoints/checkpoint-N` (resumed from
when the job is requeued), and reports progress as lines
`forja-event {json}` on standard output (rank 0 only); everything else it
or the libraries print is log.

Exit status: 0 done; 2 the plan or data is unusable (the message says
why); 75 the GPU is gone (the worker leaves the job to be requeued);
anything else: training failed.
"""

import argparse
import json
import math
import os
import sys
import time

EXIT_BAD_INPUT = 2
EXIT_GPU_LOST = 75


def emit(kind, **fields):
    """One progress line for the worker (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    fields["event"] = kind
    sys.stdout.write("forja-event " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def fail(code, message):
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def die_with_parent():
    """Linux: SIGTERM when the parent dies (the worker, or `accelerate
    launch`), so a killed worker leaves no orphan holding a GPU."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def load_plan(path):
    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
    except (OSError, ValueError) as e:
        fail(EXIT_BAD_INPUT, f"{path}: {e}")
    for key in ("model", "train", "out", "lora", "train_cfg", "pad_token_id"):
        if key not in plan:
            fail(EXIT_BAD_INPUT, f"{path}: missing `{key}`")
    return plan


def load_model(plan, torch, device):
    from transformers import AutoModelForCausalLM

    kwargs = {}
    if plan.get("load_in_4bit"):
        # QLoRA: the frozen base in 4-bit NF4, the adapter in bf16.
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    dtype = torch.float32
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    path = plan["model"]
    if path.endswith(".gguf"):
        if kwargs:
            fail(EXIT_BAD_INPUT, f"{path}: 4-bit loading needs a Hugging Face model directory, not GGUF")
        # Dense weights unpacked from the GGUF blocks (what forja's native
        # trainer trains on too); needs the `gguf` package.
        d, name = os.path.split(path)
        try:
            from transformers import GgufConfig

            kwargs["quantization_config"] = GgufConfig(gguf_file=name, dequantize=True)
        except ImportError:
            pass  # older transformers always unpack GGUF weights
        return AutoModelForCausalLM.from_pretrained(d or ".", gguf_file=name, dtype=dtype, **kwargs)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)


def load_tokenizer(plan):
    """The model's tokenizer: the trainer saves it with checkpoints; the data
    is already tokenized by forja."""
    from transformers import AutoTokenizer

    path = plan["model"]
    if path.endswith(".gguf"):
        d, name = os.path.split(path)
        tok = AutoTokenizer.from_pretrained(d or ".", gguf_file=name)
    else:
        tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token_id = plan["pad_token_id"]
    return tok


def read_examples(path, max_len):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                ids, labels = r["input_ids"], r["labels"]
            except (ValueError, KeyError) as e:
                fail(EXIT_BAD_INPUT, f"{path}: line {n}: {e}")
            if len(ids) != len(labels) or not ids:
                fail(EXIT_BAD_INPUT, f"{path}: line {n}: input_ids and labels differ in length")
            rows.append({"input_ids": ids[:max_len], "labels": labels[:max_len]})
    return rows


def latest_checkpoint(root):
    if not os.path.isdir(root):
        return None
    steps = []
    for name in os.listdir(root):
        if name.startswith("checkpoint-") and name[len("checkpoint-"):].isdigit():
            if os.path.exists(os.path.join(root, name, "trainer_state.json")):
                steps.append(int(name[len("checkpoint-"):]))
    return os.path.join(root, f"checkpoint-{max(steps)}") if steps else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="the job's plan (JSON, written by forja)")
    args = ap.parse_args()
    die_with_parent()
    plan = load_plan(args.plan)
    device = plan.get("device", "cpu")

    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(EXIT_GPU_LOST, f"device {device} was asked for but torch sees no CUDA GPU")

    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import EarlyStoppingCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tc, lc = plan["train_cfg"], plan["lora"]
    out = plan["out"]
    ckpt_root = os.path.join(out, "checkpoints")
    train_rows = read_examples(plan["train"], tc["max_len"])
    if not train_rows:
        fail(EXIT_BAD_INPUT, f"{plan['train']}: no training examples")
    val_rows = read_examples(plan["validation"], tc["max_len"]) if plan.get("validation") else []

    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = tc["batch_size"] * tc["grad_accum"] * world
    steps_per_epoch = max(1, math.ceil(len(train_rows) / per_step))
    total = tc["max_steps"] or steps_per_epoch * tc["epochs"]
    # forja's defaults: 5 % warm-up (at least one step), cosine down to
    # min_lr_ratio of the peak, validation once per epoch.
    warmup = tc["warmup_steps"] if tc["warmup_steps"] is not None else max(1, total // 20)
    eval_every = max(1, tc["eval_every"] or steps_per_epoch)
    validate = bool(val_rows)
    # forja's seeds are 64-bit; numpy's (which transformers seeds) are 32.
    seed = tc["seed"] % (1 << 32)
    save_every = eval_every if validate else (tc["save_every"] or total)

    config = SFTConfig(
        output_dir=ckpt_root,
        num_train_epochs=tc["epochs"],
        max_steps=tc["max_steps"] or -1,
        per_device_train_batch_size=tc["batch_size"],
        per_device_eval_batch_size=tc["batch_size"],
        gradient_accumulation_steps=tc["grad_accum"],
        learning_rate=tc["lr"],
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": tc["min_lr_ratio"]},
        warmup_steps=warmup,
        weight_decay=tc["weight_decay"],
        adam_beta1=tc["beta1"],
        adam_beta2=tc["beta2"],
        max_grad_norm=tc["max_grad_norm"] if tc["max_grad_norm"] > 0 else 0.0,
        max_length=tc["max_len"],
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        eval_strategy="steps" if validate else "no",
        eval_steps=eval_every if validate else None,
        save_strategy="steps",
        save_steps=save_every,
        save_total_limit=max(1, tc["keep_checkpoints"]),
        load_best_model_at_end=validate,
        metric_for_best_model="eval_loss" if validate else None,
        greater_is_better=False if validate else None,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not device.startswith("cuda"),
        bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported(),
        deepspeed=plan.get("deepspeed"),
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )

    model = load_model(plan, torch, device)
    peft_config = None
    if plan.get("init_adapter"):
        # A warm start: the previous version's adapter, trained further.
        model = PeftModel.from_pretrained(model, plan["init_adapter"], is_trainable=True)
    else:
        peft_config = LoraConfig(
            r=lc["r"],
            lora_alpha=lc["alpha"],
            lora_dropout=lc["dropout"],
            target_modules=lc["targets"],
            use_rslora=lc["rslora"],
            bias="none",
            task_type="CAUSAL_LM",
        )

    started = time.monotonic()
    limit = tc.get("time_limit_secs")

    class Events(TrainerCallback):
        def __init__(self):
            self.first_loss = None
            self.last_loss = None
            self.tokens = 0
            self.timed_out = False
            self.step_started = time.monotonic()
            self.step_tokens = 0

        def on_train_begin(self, args, state, control, model=None, **kw):
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if model else 0
            emit(
                "start",
                total_steps=state.max_steps,
                steps_per_epoch=steps_per_epoch,
                trainable_params=trainable,
                resumed_from=state.global_step,
            )
            self.step_started = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" in logs:
                loss = float(logs["loss"])
                self.first_loss = loss if self.first_loss is None else self.first_loss
                self.last_loss = loss
                seen = int(logs.get("num_tokens", self.tokens))
                now = time.monotonic()
                dt = max(now - self.step_started, 1e-9)
                emit(
                    "step",
                    step=state.global_step,
                    epoch=int(state.epoch or 0),
                    loss=loss,
                    lr=float(logs.get("learning_rate", 0.0)),
                    grad_norm=float(logs.get("grad_norm", 0.0)),
                    tokens=seen,
                    tok_per_s=(seen - self.tokens) / dt,
                )
                self.tokens, self.step_started = seen, now
            if "eval_loss" in logs:
                loss = float(logs["eval_loss"])
                best = state.best_metric is None or loss <= state.best_metric
                emit(
                    "eval",
                    step=state.global_step,
                    loss=loss,
                    perplexity=math.exp(min(loss, 50.0)),
                    token_accuracy=float(logs.get("eval_mean_token_accuracy", 0.0)),
                    best=best,
                )

        def on_save(self, args, state, control, **kw):
            emit("checkpoint", step=state.global_step, path=f"checkpoints/checkpoint-{state.global_step}")

        def on_step_end(self, args, state, control, **kw):
            if limit is not None and time.monotonic() - started >= limit:
                self.timed_out = True
                control.should_training_stop = True
                control.should_save = True

    events = Events()
    callbacks = [events]
    if validate and tc.get("patience"):
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc["patience"]))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if validate else None,
        data_collator=DataCollatorForLanguageModeling(pad_token_id=plan["pad_token_id"]),
        processing_class=load_tokenizer(plan),
        peft_config=peft_config,
        callbacks=callbacks,
    )
    resume = latest_checkpoint(ckpt_root) if plan.get("resume") else None
    try:
        trainer.train(resume_from_checkpoint=resume)
    except RuntimeError as e:
        text = str(e)
        if ("CUDA error" in text or "device-side" in text) and "out of memory" not in text:
            fail(EXIT_GPU_LOST, f"the GPU failed during training: {text.splitlines()[0]}")
        raise

    state = trainer.state
    if not trainer.is_world_process_zero():
        return
    # With validation data the best checkpoint is loaded back at the end.
    kept = state.global_step
    if validate and state.best_model_checkpoint:
        kept = int(state.best_model_checkpoint.rstrip("/").rsplit("-", 1)[1])
    trainer.model.save_pretrained(out)
    if events.timed_out:
        stopped_by = "time_limit"
    elif state.global_step < state.max_steps:
        stopped_by = "early_stopping"
    elif tc["max_steps"]:
        stopped_by = "max_steps"
    else:
        stopped_by = "completed"
    emit(
        "done",
        steps=state.global_step,
        stopped_by=stopped_by,
        kept_step=kept,
        best_val_loss=state.best_metric if validate else None,
        first_loss=events.first_loss,
        last_loss=events.last_loss,
        tokens=events.tokens,
        seconds=time.monotonic() - started,
    )


if __name__ == "__main__":
    main()
