#!/usr/bin/env python3
"""Check `forja pretrain --emit megatron` against Megatron's own code.

For the example cluster plan and variants of it (other world sizes,
tensor/pipeline/context/expert splits, some of which do not divide), the
script asks both sides:

  forja     `forja pretrain --emit megatron --config VARIANT --out DIR`:
            accepted (plan.json with data parallel, model parallel, expert
            data parallel) or refused (one line naming the numbers);
  Megatron  megatron.core's `parallel_state.initialize_model_parallel` on a
            simulated world of that many ranks (torch.distributed's world
            size, rank and group creation are stubbed; everything else is
            Megatron's code: its divisibility checks, its rank generators,
            the groups it builds), and `TransformerConfig` with the model's
            sizes (its checks of heads, query groups and MoE against the
            parallel sizes). One check is transcribed, not run: experts
            must split over expert parallel, which Megatron asserts when
            it builds the MoE layer on GPUs.

They must agree on every variant: both accept with the same data
parallel, model parallel and expert data parallel sizes, or both refuse.

usage: scripts/megatron-check.py [--forja PATH] [--config examples/pretrain/cluster.toml]
       (a Python with torch and megatron-core: `make setup-trl`)
exit:  0 agreement on every variant, 1 a disagreement, 2 missing packages.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import tomllib
import warnings

warnings.filterwarnings("ignore")
try:
    import torch
    import torch.distributed as dist
except ImportError as e:
    print(f"megatron-check: {e} (make setup-trl)", file=sys.stderr)
    sys.exit(2)


def toml_dump(d):
    out = []
    for section, values in d.items():
        out.append(f"[{section}]")
        for k, v in values.items():
            out.append(f"{k} = {json.dumps(v)}")
        out.append("")
    return "\n".join(out)


def forja_side(exe, cfg, tmp):
    path = os.path.join(tmp, "cluster.toml")
    with open(path, "w") as f:
        f.write(toml_dump(cfg))
    out = os.path.join(tmp, "launch")
    p = subprocess.run(
        [exe, "pretrain", "--emit", "megatron", "--config", path, "--out", out],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
    with open(os.path.join(out, "plan.json")) as f:
        plan = json.load(f)
    return {k: plan[k] for k in ("data_parallel", "model_parallel", "expert_data_parallel")}, None


def megatron_side(cfg):
    """Megatron's view of the plan, or why it refuses it."""
    import megatron.core.parallel_state as ps
    from megatron.core.transformer import TransformerConfig

    par, model, moe = cfg["parallel"], cfg["model"], cfg.get("moe", {})
    world = cfg["cluster"]["nodes"] * cfg["cluster"]["gpus_per_node"]
    groups = {}

    def new_group(ranks=None, *a, **k):
        desc = k.get("group_desc") or "?"
        groups.setdefault(desc, len(ranks) if ranks is not None else world)
        return object()

    dist.is_initialized = lambda: True
    dist.get_world_size = lambda group=None: world
    dist.get_rank = lambda group=None: 0
    dist.new_group = new_group
    ps.destroy_model_parallel()
    try:
        ps.initialize_model_parallel(
            tensor_model_parallel_size=par["tensor"],
            pipeline_model_parallel_size=par["pipeline"],
            context_parallel_size=par.get("context", 1),
            expert_model_parallel_size=par.get("expert", 1),
            # What forja's launch.sh passes (Megatron's own default is
            # the tensor size).
            expert_tensor_parallel_size=par.get("expert_tensor", 1),
        )
        TransformerConfig(
            num_layers=model["num_layers"],
            hidden_size=model["hidden_size"],
            num_attention_heads=model["num_attention_heads"],
            num_query_groups=model.get("num_query_groups"),
            ffn_hidden_size=model.get("ffn_hidden_size"),
            tensor_model_parallel_size=par["tensor"],
            pipeline_model_parallel_size=par["pipeline"],
            context_parallel_size=par.get("context", 1),
            expert_model_parallel_size=par.get("expert", 1),
            sequence_parallel=par.get("sequence_parallel", False),
            num_moe_experts=moe.get("num_experts"),
            moe_router_topk=moe.get("top_k", 2),
            expert_tensor_parallel_size=par.get("expert_tensor", 1),
            # launch.sh's --swiglu, --normalization RMSNorm, --disable-bias-linear
            gated_linear_unit=True,
            normalization="RMSNorm",
            add_bias_linear=False,
            pipeline_dtype=torch.bfloat16,
            bf16=cfg.get("train", {}).get("precision", "bf16") == "bf16",
        )
        # Megatron asserts this when it builds the MoE layer
        # (megatron/core/transformer/moe/moe_layer.py), which needs GPUs;
        # the one check transcribed rather than run.
        if moe and moe["num_experts"] % par.get("expert", 1):
            raise AssertionError("moe_layer.py: num_moe_experts % ep_size != 0")
    except (RuntimeError, ValueError, AssertionError) as e:
        return None, str(e).splitlines()[0] if str(e) else type(e).__name__
    finally:
        ps.destroy_model_parallel()
    # forja's model_parallel is the GPUs of one replica (tensor × pipeline ×
    # context); Megatron's model-parallel group leaves context out.
    return {
        "data_parallel": groups.get("DATA_PARALLEL_GROUP"),
        "model_parallel": groups.get("MODEL_PARALLEL_GROUP") * par.get("context", 1),
        "expert_data_parallel": groups.get("EXPERT_DATA_PARALLEL_GROUP") if moe else None,
    }, None


def variants(base):
    yield "the example", base
    for nodes in (1, 3, 4, 16):
        v = copy.deepcopy(base)
        v["cluster"]["nodes"] = nodes
        yield f"{nodes} nodes", v
    for tp, pp, ep in ((4, 4, 8), (8, 2, 4), (2, 8, 8), (8, 4, 16), (16, 4, 8), (8, 3, 8)):
        v = copy.deepcopy(base)
        v["parallel"].update(tensor=tp, pipeline=pp, expert=ep)
        yield f"tensor {tp} pipeline {pp} expert {ep}", v
    v = copy.deepcopy(base)
    v["parallel"].update(tensor=8, pipeline=2, context=2, expert=1)
    v.pop("moe")
    yield "dense, context 2", v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forja", default="target/debug/forja")
    ap.add_argument("--config", default="examples/pretrain/cluster.toml")
    a = ap.parse_args()
    try:
        import megatron.core  # noqa: F401
    except ImportError as e:
        print(f"megatron-check: {e} (make setup-trl)", file=sys.stderr)
        sys.exit(2)
    with open(a.config, "rb") as f:
        base = tomllib.load(f)
    failed = 0
    for name, cfg in variants(base):
        with tempfile.TemporaryDirectory() as tmp:
            ours, why_ours = forja_side(a.forja, cfg, tmp)
        theirs, why_theirs = megatron_side(cfg)
        # Megatron checks layers against pipeline stages elsewhere (its
        # argument parser); forja refuses them up front.
        ok = (ours is None) == (theirs is None) and (ours is None or ours == theirs)
        failed += not ok
        mark = "agree" if ok else "DISAGREE"
        print(f"{mark:8} {name:32} forja: {ours or 'refused: ' + why_ours}")
        print(f"{'':8} {'':32} megatron: {theirs or 'refused: ' + why_theirs}")
    print(f"{'every variant agrees' if not failed else f'{failed} variant(s) disagree'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
