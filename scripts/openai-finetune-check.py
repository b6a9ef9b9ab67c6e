#!/usr/bin/env python3
"""The official `openai` Python client against a running forja.

Uploads a fine-tuning file, creates a job, follows it to `succeeded`, lists
its events, checkpoints and the job list, and checks that forja's errors
reach the client as the right exception types (invalid file, unknown job,
cancelling a finished job). Exits non-zero on any mismatch.

usage: scripts/openai-finetune-check.py BASE_URL API_KEY MODEL
"""
import io
import json
import sys
import time

import openai


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, key, model = sys.argv[1:]
    client = openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key=key, max_retries=0)
    words = ["hello", "world", "forja", "tokenizer"]
    lines = [
        json.dumps({"messages": [
            {"role": "user", "content": f"{words[i % 4]} {words[(i // 4) % 4]}"},
            {"role": "assistant", "content": f"{words[(i + 1) % 4]} {words[(i + 2) % 4]}"},
        ]})
        for i in range(16)
    ]
    f = client.files.create(file=("train.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="fine-tune")
    assert f.object == "file" and f.status == "processed" and f.purpose == "fine-tune", f
    assert client.files.retrieve(f.id).bytes == f.bytes

    try:
        client.files.create(file=("bad.jsonl", io.BytesIO(b'{"messages": []}\n')), purpose="fine-tune")
        raise AssertionError("an invalid file was accepted")
    except openai.BadRequestError as e:
        assert e.code == "invalid_file" and "line 1" in e.message, e

    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=f.id,
        suffix="openai",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
    )
    assert job.object == "fine_tuning.job" and job.status == "validating_files", job
    deadline = time.time() + 600
    while True:
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        assert time.time() < deadline, f"job still {job.status}"
        time.sleep(0.5)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.trained_tokens and job.trained_tokens > 0, job
    assert job.hyperparameters.n_epochs == 2, job.hyperparameters

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    kinds = {e.type for e in events}
    assert {"message", "metrics"} <= kinds, kinds
    assert events[0].message == "The job has successfully completed", events[0]
    metrics = [e for e in events if e.type == "metrics" and e.data and "train_loss" in e.data]
    assert metrics, "no training metrics in the events"
    page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(page.data) == 2 and page.has_more

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].step_number >= 1, checkpoints
    assert "train_loss" in checkpoints[0].metrics.model_dump(exclude_none=True), checkpoints[0].metrics

    assert job.id in [j.id for j in client.fine_tuning.jobs.list(limit=10).data]
    try:
        client.fine_tuning.jobs.retrieve("ftjob-000000000000000000000000")
        raise AssertionError("an unknown job was found")
    except openai.NotFoundError:
        pass
    try:
        client.fine_tuning.jobs.cancel(job.id)
        raise AssertionError("a finished job was cancelled")
    except openai.ConflictError:
        pass
    print(f"openai {openai.__version__}: file {f.id}, job {job.id} succeeded "
          f"({job.trained_tokens} tokens, {len(events)} events, {len(checkpoints)} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
